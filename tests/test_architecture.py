"""The structure the code promises: every setting reaches its command's help, the config file and
the JSON; core's layers import only downwards; cli uses core's public names only; core's exports
and packages are complete."""

from __future__ import annotations

import ast
import importlib
import json
import tomllib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import assert_one_line_error, make_predictions, write_table
from typer.testing import CliRunner

import gaussnll.core
from gaussnll.cli.app import app
from gaussnll.cli.settings import (
    COMPARE,
    MERGE,
    RECALIBRATE,
    RESCALE,
    SCORE,
    SETTINGS,
    SIDES,
    Setting,
    settings_of,
)
from gaussnll.core import ColumnSpec

ROOT = Path(__file__).resolve().parents[1]
CORE, CLI = ROOT / "core", ROOT / "cli"
COMMANDS = (SCORE, COMPARE)  # the commands that read a config file's every setting
EVERY_COMMAND = (*COMMANDS, RECALIBRATE, RESCALE, MERGE)


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


# --- settings: help, config file, JSON ---------------------------------------------------------


def help_tokens(command: str) -> set[str]:
    """The flags the help lists as options (the first words of the option rows, not the text)."""
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    flags = set()
    for line in result.stdout.splitlines():
        words = line.strip("│ ").split()
        while words and words[0].startswith("-"):
            flags.add(words.pop(0))
    return flags


def flag_names(setting: Setting) -> set[str]:
    """Each flag a setting declares (both of a ``--x/--no-x`` pair)."""
    return {name for declaration in setting.flags for name in declaration.split("/")}


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_every_setting_of_a_command_is_in_its_help(command):
    shown = help_tokens(command)
    for setting in settings_of(command):
        assert flag_names(setting) <= shown, setting.name


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_no_setting_of_the_other_command_only_is_in_its_help(command):
    shown = help_tokens(command)
    own = set().union(*(flag_names(s) for s in settings_of(command)))
    foreign = [s for s in SETTINGS if command not in s.commands]
    assert foreign, "each command has settings of its own"
    for setting in foreign:
        assert not (flag_names(setting) - own) & shown, setting.name


# A valid value, other than the default, for every config-able setting; the data below has the
# columns they name.
CONFIG_VALUES = {
    "mean_col": "mu",
    "target_col": "y",
    "var_col": "v",
    "std_col": "sd",
    "log_var_col": "lv",
    "id_col": "id",
    "weight_col": "w",
    "full": True,
    "eps": 1e-5,
    "reduction": "sum",
    "chunk_size": 37,
    "device": "cpu",
    "dtype": "float32",
    "nan_policy": "skip",
    "delimiter": ";",
    "calibration": False,
    "levels": [0.3, 0.7],
    "pit_bins": 7,
    "uncertainty_bins": 4,
    "workers": 2,
    "checks": ["nll <= 100"],
    "by": ["g"],
    "max_groups": 50,
    "top": 2,
    "sort_by": "nll",
    "per_group": True,
    "compare_checks": ["delta_nll <= 100"],
    "max_regression": 100.0,
    "confidence": 0.9,
    "ci": True,
    "ci_level": 0.9,
    "ci_replicates": 10,
    "ci_seed": 3,
    "recalibration": "{tmp}/map.json",  # written by ``prepared`` below
    "dask": "local",
    "dask_workers": 1,
    "ensemble": True,  # one member per row: the single mean and var columns
    "member_weights": [1.0],
    "samples": "mean",  # one draw per row: the mean column
    "metrics": ["nll", "crps"],
    "group_metrics": ["nll"],
    "quantiles": [0.5],  # the mean column as a median
    "quantile_cols": "mean",
    **{f"{side}_samples": "mean" for side in SIDES},
    **{f"{side}_quantiles": [0.5] for side in SIDES},
    **{f"{side}_quantile_cols": "mean" for side in SIDES},
}
# What a setting needs beside it on the command line to apply, in score and compare alike.
SHARED_COMPANIONS = {
    "member_weights": ("--ensemble",),
    "group_metrics": ("--by", "g"),
    "quantiles": ("--quantile-cols", "mean"),
    "quantile_cols": ("--quantiles", "0.5"),
    "ci_level": ("--ci",),
    "ci_replicates": ("--ci",),
    "ci_seed": ("--ci",),
}
COMPANIONS = {  # score's
    **SHARED_COMPANIONS,
    "id_col": ("--per-row", "{tmp}/rows.parquet"),
    "top": ("--by", "g"),
    "sort_by": ("--by", "g"),
    "per_group": ("--by", "g", "--check", "nll <= 100"),
    "dask": ("--dask-workers", "1"),
}
BOTH_COMPANIONS = {  # compare's
    **SHARED_COMPANIONS,
    "per_group": ("--by", "g", "--check", "delta_nll <= 100"),
    **{f"{side}_quantiles": (f"--{side}-quantile-cols", "mean") for side in SIDES},
    **{f"{side}_quantile_cols": (f"--{side}-quantiles", "0.5") for side in SIDES},
}
WRONG_VALUES = {str: 5, int: "many", float: "small", bool: "yes", list: 5}
CONFIG_SETTINGS = [s for s in SETTINGS if s.config]


def prepared(value: object, tmp: Path) -> object:
    """A config value naming a file: the file, made in ``tmp`` (a recalibration map)."""
    if not (isinstance(value, str) and "{tmp}" in value):
        return value
    path = value.format(tmp=tmp)
    recalibration = {"schema": "gaussnll.recalibration/1", "eps": 1e-6, "outputs": ["mean"],
                     "scale": [1.5], "by": [], "groups": []}  # fmt: skip
    Path(path).write_text(json.dumps(recalibration))
    return path


def toml_value(value: object) -> str:
    return json.dumps(value)  # the JSON of these strings, numbers, booleans and lists is TOML


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    columns = make_predictions(200, seed=3)
    table = pa.table(
        {
            **columns,
            "mu": columns["mean"],
            "y": columns["target"],
            "v": columns["var"],
            "sd": np.sqrt(columns["var"]),
            "lv": np.log(columns["var"]),
            "id": np.arange(200),
            "g": np.arange(200) % 3,
            "w": np.arange(200) % 4 + 0.5,
        }
    )
    return write_table(table, tmp_path_factory.mktemp("data") / "preds.parquet")


def run_with_config(command: str, data: Path, config: Path, *more: str):
    files = (str(data),) if command == SCORE else (str(data), str(data))
    return run(command, *files, "--config", str(config), "--json", "-q", *more)


def test_every_config_setting_has_a_value_here():
    assert {s.name for s in CONFIG_SETTINGS} == set(CONFIG_VALUES)


@pytest.mark.parametrize(
    ("command", "setting"),
    [(c, s) for c in COMMANDS for s in settings_of(c, config=True)],
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_config_value_of_its_type_round_trips_to_the_json(tmp_path, data_file, command, setting):
    value = prepared(CONFIG_VALUES[setting.name], tmp_path)
    config = tmp_path / "gaussnll.toml"
    config.write_text(f"{setting.name} = {toml_value(value)}\n")
    companions = (
        COMPANIONS.get(setting.name, ())
        if command == SCORE
        else BOTH_COMPANIONS.get(setting.name, ())
    )
    more = [arg.format(tmp=tmp_path) for arg in companions]
    result = run_with_config(command, data_file, config, *more)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["config"]["file"] == str(config)
    assert payload["config"]["settings"][setting.name] == value


@pytest.mark.parametrize("setting", CONFIG_SETTINGS, ids=lambda s: s.name)
def test_config_value_of_a_wrong_type_is_one_line_naming_the_key(tmp_path, data_file, setting):
    config = tmp_path / "gaussnll.toml"
    config.write_text(f"{setting.name} = {toml_value(WRONG_VALUES[setting.kind])}\n")
    command = SCORE if SCORE in setting.commands else COMPARE
    assert_one_line_error(run_with_config(command, data_file, config), str(config), setting.name)


@pytest.mark.parametrize("setting", [s for s in SETTINGS if not s.config], ids=lambda s: s.name)
def test_a_command_line_only_setting_is_rejected_in_a_config_file(tmp_path, data_file, setting):
    config = tmp_path / "gaussnll.toml"
    value = {str: "x", bool: True, float: 1.5}[setting.kind]
    config.write_text(f"{setting.name} = {toml_value(value)}\n")
    for command in COMMANDS:
        assert_one_line_error(run_with_config(command, data_file, config), repr(setting.name))


# --- layering ----------------------------------------------------------------------------------

LAYERS = ("io", "state", "report", "run")  # each may import only those before it
TOP_LEVEL = (
    "options",
    "families",
    "errors",
    "loss",
    "mixture_loss",
    "recalibration",
    "untrusted",
)  # no sub-package
BASE = (
    "options",
    "families",
    "errors",
    "loss",
    "recalibration",
    "untrusted",
)  # what a top-level module may import


def imported_modules(tree: ast.AST, package: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``tree`` names, absolute; relative
    imports are resolved against ``package``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(resolved(node, package))
    return found


def resolved(node: ast.ImportFrom, package: str) -> str:
    """The absolute name of the module a ``from ... import`` names, relative to ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def layer_of(module: str) -> str | None:
    """The layer (``io``...) or top-level module (``options``...) of a ``gaussnll.core`` module."""
    if not module.startswith("gaussnll.core."):
        return None
    return module.split(".")[2]


def layering_violations(module: str, source: str) -> list[str]:
    """The imports of core module ``module`` (``gaussnll.core.io.readers``) that break the
    layering."""
    own = layer_of(module)
    package = module.rsplit(".", 1)[0]
    allowed: set[str]
    if own in LAYERS:
        allowed = {*TOP_LEVEL, *LAYERS[: LAYERS.index(own) + 1]}
    else:
        allowed = set(BASE) | ({own} if own else set())
    return sorted(
        target
        for target in imported_modules(ast.parse(source), package)
        if (layer := layer_of(target)) is not None and layer not in allowed
    )


def core_modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the public facade, importing every layer lazily
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        modules.append((".".join(("gaussnll", "core", *parts)), path))
    return modules


@pytest.mark.parametrize(("module", "path"), core_modules(), ids=[m for m, _ in core_modules()])
def test_core_modules_import_only_lower_layers(module, path):
    assert layering_violations(module, path.read_text()) == []


def test_every_layer_and_top_level_module_is_checked():
    layers = {layer_of(module) for module, _ in core_modules()}
    assert layers == {*LAYERS, *TOP_LEVEL}


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("gaussnll.core.io.readers", "from gaussnll.core.state.sinks import Sums", 1),
        ("gaussnll.core.io.readers", "from ..run import api", 1),
        ("gaussnll.core.state.sinks", "import gaussnll.core.report.report", 1),
        ("gaussnll.core.report.derive", "def f():\n    from gaussnll.core.run import api", 1),
        ("gaussnll.core.loss", "from gaussnll.core.io import tensors", 1),
        ("gaussnll.core.options", "from gaussnll.core.errors import OptionError", 0),
        ("gaussnll.core.run.api", "from gaussnll.core.io.readers import x", 0),
        ("gaussnll.core.run.api", "from . import engine", 0),
    ],
)
def test_the_layering_check_sees_upward_imports(module, source, expected):
    assert len(layering_violations(module, source)) == expected


# --- every module: no import upwards, no cycle, none hidden in a function ----------------------

# Lowest first: a module may import its own level and those below it, never one above. The
# top-level modules of core sit below the layers; cli is above them all.
ORDER = (
    ("errors",),
    ("families", "loss", "mixture_loss", "untrusted"),
    ("recalibration", "options"),
    ("io",),
    ("state",),
    ("report",),
    ("run",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(ORDER) for name in names}


def every_module() -> dict[str, Path]:
    """Each module of ``gaussnll`` (core's and cli's, packages by their ``__init__``) by name."""
    modules = {}
    for top in (CORE, CLI):
        for path in sorted(top.rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join(("gaussnll", *parts))] = path
    return modules


MODULES = every_module()


def rank_of(module: str) -> int | None:
    """The level of a ``gaussnll`` module in ``ORDER`` (None: the ``gaussnll.core`` facade)."""
    parts = module.split(".")
    if parts[1] == "cli":
        return RANK["cli"]
    return RANK[parts[2]] if len(parts) > 2 else None


def imports_of(module: str, source: str) -> list[tuple[str, bool]]:
    """The ``gaussnll`` modules ``module`` imports, each with whether the import is inside a
    function (run later, where it can hide a cycle); ``from package import name`` names the
    submodule when ``name`` is one. Imports for type checkers only are left out."""
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    package = module if is_package else module.rsplit(".", 1)[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                continue
            inside = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = resolved(child, package)
                for alias in child.names:
                    name = f"{base}.{alias.name}"
                    found.append((name if name in MODULES else base, inside))
            visit(child, inside)

    visit(ast.parse(source), False)
    return [(name, inside) for name, inside in found if name.startswith("gaussnll.")]


def upward_imports(module: str, source: str) -> list[str]:
    """The modules ``module`` imports from a level above its own (``ORDER``)."""
    own = rank_of(module)
    return sorted(
        target
        for target, _ in imports_of(module, source)
        if own is not None and (rank := rank_of(target)) is not None and rank > own
    )


def function_level_imports(module: str, source: str) -> list[str]:
    """The ``gaussnll`` modules imported inside a function or class of ``module``: an import
    run late hides a cycle from the import graph. (A third-party module imported late, e.g.
    matplotlib or dask, only when needed, is fine.)"""
    return sorted(target for target, inside in imports_of(module, source) if inside)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (module → the modules it imports): each strongly
    connected set of more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        module: {target for target, _ in imports_of(module, path.read_text())} - {module}
        for module, path in MODULES.items()
    }


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_level(module):
    assert upward_imports(module, MODULES[module].read_text()) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_gaussnll_inside_a_function(module):
    assert function_level_imports(module, MODULES[module].read_text()) == []


def test_the_modules_import_each_other_in_no_cycle():
    assert cycles(import_graph()) == []


def test_every_level_is_ordered():
    levels = {module.split(".")[2] for module in MODULES if module.startswith("gaussnll.core.")}
    assert levels == {*LAYERS, *TOP_LEVEL} <= set(RANK)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("gaussnll.core.io.readers", "from gaussnll.cli import render", ["gaussnll.cli.render"]),
        ("gaussnll.core.errors", "from gaussnll.core.loss import x", ["gaussnll.core.loss"]),
        ("gaussnll.core.loss", "from gaussnll.core.options import x", ["gaussnll.core.options"]),
        ("gaussnll.core.report.catalogue", "from . import report", []),
        ("gaussnll.core.state.sinks", "from ..run import scorer", ["gaussnll.core.run.scorer"]),
        ("gaussnll.cli.render", "from gaussnll.core import Report", []),
        ("gaussnll.core.options", "from gaussnll.core.recalibration import x", []),
    ],
)
def test_the_order_check_sees_upward_imports(module, source, expected):
    assert upward_imports(module, source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "def f():\n    from gaussnll.core.report import catalogue",
            ["gaussnll.core.report.catalogue"],
        ),
        (
            "class C:\n    def f(self):\n        from . import fields",
            ["gaussnll.core.report.fields"],
        ),
        ("def f():\n    import matplotlib", []),
        ("from gaussnll.core.report import fields", []),
        ("if TYPE_CHECKING:\n    from gaussnll.core.report import fields", []),
    ],
)
def test_the_function_level_check_sees_late_imports(source, expected):
    assert function_level_imports("gaussnll.core.report.report", source) == expected


def test_the_cycle_check_sees_a_cycle_through_a_late_import():
    late = "def metric():\n    from gaussnll.core.report.catalogue import SCORE_METRICS"
    found = imports_of("gaussnll.core.report.report", late)
    assert found == [("gaussnll.core.report.catalogue", True)]
    report, catalogue = "gaussnll.core.report.report", "gaussnll.core.report.catalogue"
    assert cycles({report: {catalogue}, catalogue: {report}}) == [[catalogue, report]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def core_imports_of_cli(source: str) -> tuple[set[str], set[str]]:
    """The names a cli module imports from ``gaussnll.core``, and the ``gaussnll.core.x``
    submodules it imports."""
    names, submodules = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "gaussnll.core":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gaussnll.core."):
            submodules.add(node.module or "")
        elif isinstance(node, ast.Import):
            submodules.update(a.name for a in node.names if a.name.startswith("gaussnll.core."))
    return names, submodules


@pytest.mark.parametrize("path", sorted(CLI.rglob("*.py")), ids=lambda p: p.name)
def test_cli_imports_only_public_core_names(path):
    names, submodules = core_imports_of_cli(path.read_text())
    assert submodules == set()
    assert names <= set(gaussnll.core.__all__)


def test_the_cli_import_check_sees_private_imports():
    source = "from gaussnll.core import score, _hidden\nimport gaussnll.core.io.readers\n"
    names, submodules = core_imports_of_cli(source)
    assert names - set(gaussnll.core.__all__) == {"_hidden"}
    assert submodules == {"gaussnll.core.io.readers"}


# --- exports and packages ----------------------------------------------------------------------


def type_checking_imports() -> dict[str, str]:
    """``name: module`` of every import in ``gaussnll.core.__init__``'s TYPE_CHECKING block."""
    tree = ast.parse((CORE / "__init__.py").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    return {
        alias.asname or alias.name: node.module or ""
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_type_checking_imports_equal_the_exports():
    imports = type_checking_imports()
    exports = gaussnll.core._EXPORTS
    assert set(imports) == set(exports)
    assert set(gaussnll.core.__all__) == set(exports)
    for name, module in imports.items():
        assert module == f"gaussnll.core.{exports[name]}", name
        assert getattr(gaussnll.core, name) is getattr(importlib.import_module(module), name)


def test_every_core_sub_package_is_packaged():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = set(pyproject["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(("gaussnll", "core", *init.parent.relative_to(CORE).parts))
        for init in CORE.rglob("__init__.py")
    }
    assert folders >= {"gaussnll.core", "gaussnll.core.io", "gaussnll.core.run"}
    assert folders | {"gaussnll.cli"} <= packaged
    sub_folders = {
        ".".join(("gaussnll", "core", *d.relative_to(CORE).parts))
        for d in CORE.rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
    }
    assert sub_folders <= packaged


def test_a_single_column_name_becomes_a_tuple():
    assert ColumnSpec(mean="mu").mean == ("mu",)
