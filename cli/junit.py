"""The checks as JUnit XML, so CI systems list each gate as a test case. Text from data (paths,
group keys) is shown literally: XML 1.0 cannot hold control characters."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from gaussnll.cli.gates import log_number
from gaussnll.cli.literal import literal
from gaussnll.core import Catalog, CheckResult, GroupCheckResult


def junit_xml(
    results: Sequence[CheckResult | GroupCheckResult],
    suite_name: str,
    seconds: float,
    catalog: Catalog,
) -> str:
    """One ``<testsuite>`` named ``suite_name`` (the command and its inputs); one
    ``<testcase>`` per check."""
    failures = sum(not result.passed for result in results)
    suites = ET.Element("testsuites", tests=str(len(results)), failures=str(failures))
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=literal(suite_name),
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        time=f"{seconds:.3f}",
    )
    for result in results:
        check = result.check
        case = ET.SubElement(
            suite, "testcase", classname="gaussnll.checks", name=literal(check.text)
        )
        value = literal(result.describe(log_number(catalog, check.metric)))
        if result.passed:
            ET.SubElement(case, "system-out").text = f"{check.metric} = {value}"
        else:
            message = f"{check.metric} = {value}, expected {check.op} {check.bound_text()}"
            ET.SubElement(case, "failure", message=message, type="CheckFailed").text = message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
