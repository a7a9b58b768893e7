"""Merge state files on a Dask cluster, with the single process's report and errors.

Each leaf task loads one state file on a worker (workers must reach the paths); the states are
merged by the tree reduction of ``score --dask`` (``distributed.tree_reduced``, ``TREE_WIDTH``
at a time), and the client merges the last one (``StateMerger``) and derives the report.

The single process (``merging.merge_state_files``) stops at the first file, in the order given,
that cannot be read, holds the same state as an earlier one (its identity), was scored with
other options than the first file, holds another number of outputs, or holds malformed sums.
A tree sees files in groups, so each task returns what decides that order as data: its files'
errors, each distinct set of options and outputs with the first file holding it ("variants"),
and every file's identity (duplicates are merged on the workers and refused by the client,
unless allowed). The client then raises the error of the first file at fault, with the single
process's message. A group of files whose variants differ is not merged (its result would be
refused anyway).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from gaussnll.core.errors import GaussnllError, InputError, OptionError, UsageError
from gaussnll.core.io.timeouts import answer_timeout
from gaussnll.core.run.distributed import dask_client, tree_reduced
from gaussnll.core.run.engine import ProgressCallback
from gaussnll.core.run.merging import (
    StateMerger,
    duplicated,
    load_state,
    options_differ,
    outputs_differ,
)
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.run.state_document import check_document, difference, identity_key

# how the single process orders the problems of one file
_LOADING, _DUPLICATE, _OPTIONS, _OUTPUTS, _SUMS, _GROUPS = range(6)


def merge_on_dask(
    paths: Sequence[str],
    *,
    address: str,
    workers: int | None = None,
    max_groups: int | None = None,
    allow_duplicates: bool = False,
    on_progress: ProgressCallback | None = None,
    timeout: float | None = None,
    verbose: bool = False,
) -> Scorer:
    """``merging.merge_state_files`` of ``paths`` on the Dask cluster at ``address`` (with
    ``workers``, ``timeout`` and ``verbose`` as for ``score_on_dask``);
    ``on_progress(files_loaded, files, None, None)`` as files load."""
    if not paths:
        raise UsageError("give at least one state to merge")
    started = time.perf_counter()
    files = [(k, os.path.abspath(path), path) for k, path in enumerate(paths)]
    with answer_timeout(timeout) as seconds, dask_client(address, workers, verbose) as client:
        leaves = client.map(load_state_file, files, timeout=seconds, pure=False)
        root = tree_reduced(client, leaves, merged_state_files, max_groups=max_groups)
        if on_progress is not None:
            from distributed import as_completed

            for done, _ in enumerate(as_completed(leaves), start=1):
                on_progress(done, len(paths), None, None)
        result = root.result()
    _raise_first_problem(result, allow_duplicates)
    merger = StateMerger(max_groups=max_groups)
    merger.add(result["state"], result["label"])
    merged = merger.result()
    merged.started = started  # the report's seconds: the whole merge's, the cluster's start too
    return merged


def load_state_file(file: tuple[int, str, str], timeout: float) -> dict[str, Any]:
    """Run on a worker: the state in file ``(index, path, label)``, or why it cannot be read
    (a store given ``timeout`` seconds to answer)."""
    torch.set_num_threads(1)
    index, path, label = file
    try:
        with answer_timeout(timeout):
            document = load_state(path)
        check_document(document, label)
    except GaussnllError as error:
        return {"partition": index, "errors": [_record(error, index, _LOADING, path, label)]}
    variant = {"partition": index, "label": label}
    variant.update(options=document["options"], outputs=document["outputs"])
    key = identity_key(document)
    identities = [] if key is None else [{"partition": index, "label": label, "key": list(key)}]
    return {
        "partition": index,
        "label": label,
        "state": document,
        "variants": [variant],
        "identities": identities,
    }


def merged_state_files(
    results: list[dict[str, Any]], max_groups: int | None = None
) -> dict[str, Any]:
    """Run on a worker: results of files (``load_state_file``'s or this one's) merged into
    one, or every problem found among them and their variants."""
    torch.set_num_threads(1)
    first = results[0]
    errors = [error for result in results for error in result.get("errors", ())]
    variants = _distinct([v for result in results for v in result.get("variants", ())])
    identities = [i for result in results for i in result.get("identities", ())]
    merger = StateMerger(max_groups=max_groups, allow_duplicates=True)  # the client decides
    clean = not errors and len({_key(v)[0] for v in variants}) == 1
    clean = clean and len({v["outputs"] for v in variants} - {None}) <= 1
    for result in results:
        if "state" not in result:
            continue
        index, label = result["partition"], result["label"]
        try:
            if clean:
                merger.add(result["state"], label)
            else:  # only to find malformed sums, ordered with the other problems
                Scorer.from_state(result["state"], path=label)
        except OptionError as error:  # more groups than --max-groups
            errors.append(_record(error, index, _GROUPS, None, label))
            clean = False
        except GaussnllError as error:
            errors.append(_record(error, index, _SUMS, None, label))
            clean = False
    summary = {
        "partition": first["partition"],
        "label": first.get("label"),
        "variants": variants,
        "identities": identities,
    }
    if not clean:
        return {**summary, "errors": errors}
    return {**summary, "state": merger.state()}


def _raise_first_problem(result: dict[str, Any], allow_duplicates: bool) -> None:
    """Raise the problem of the first file at fault, as the single process would."""
    problems = [((r["partition"], r["rank"]), _error(r)) for r in result.get("errors", ())]
    if not allow_duplicates:
        first: dict[tuple[Any, ...], str] = {}
        for entry in sorted(result.get("identities", ()), key=lambda i: i["partition"]):
            key = tuple(entry["key"])
            if key in first:
                error = duplicated(first[key], entry["label"], key)
                problems.append(((entry["partition"], _DUPLICATE), error))
            first.setdefault(key, entry["label"])
    variants = sorted(result.get("variants", ()), key=lambda v: v["partition"])
    if variants:
        base = variants[0]
        for variant in variants[1:]:
            found = difference(base["options"], variant["options"])
            if found is not None:
                error = options_differ(base["label"], variant["label"], found)
                problems.append(((variant["partition"], _OPTIONS), error))
        shaped = [v for v in variants if v["outputs"] is not None]
        for variant in shaped[1:]:
            if variant["outputs"] != shaped[0]["outputs"]:
                error = outputs_differ(shaped[0]["outputs"], variant["outputs"])
                problems.append(((variant["partition"], _OUTPUTS), error))
    if problems:
        raise min(problems, key=lambda problem: problem[0])[1]


def _distinct(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One variant per distinct options and outputs: the first file's."""
    first: dict[tuple[str, Any], dict[str, Any]] = {}
    for variant in sorted(variants, key=lambda v: v["partition"]):
        first.setdefault(_key(variant), variant)
    return list(first.values())


def _key(variant: dict[str, Any]) -> tuple[str, Any]:
    return json.dumps(variant["options"], sort_keys=True), variant["outputs"]


def _record(
    error: GaussnllError, index: int, rank: int, path: str | None, label: str
) -> dict[str, Any]:
    """``error`` as plain data, its file named as the user named it (``label``)."""
    record: dict[str, Any] = {"partition": index, "rank": rank, "kind": "UsageError"}
    if isinstance(error, OptionError):
        record.update(kind="OptionError", parameter=error.parameter, message=error.detail)
    elif isinstance(error, InputError):
        shown = label if error.path in (path, label) else error.path
        record.update(kind="InputError", message=error.detail, path=shown)
        record.update(column=error.column, row=error.row)
    else:
        record["message"] = str(error)
    return record


def _error(record: dict[str, Any]) -> GaussnllError:
    if record["kind"] == "OptionError":
        return OptionError(record["parameter"], record["message"])
    if record["kind"] == "InputError":
        place = {key: record[key] for key in ("path", "column", "row")}
        return InputError(record["message"], **place)
    return UsageError(record["message"])
