"""The checks as JUnit XML, so CI systems list each gate as a test case."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from gaussnll.core import CheckResult, GroupCheckResult


def junit_xml(
    results: Sequence[CheckResult | GroupCheckResult], suite_name: str, seconds: float
) -> str:
    """One ``<testsuite>`` named ``suite_name`` (the command and its inputs); one
    ``<testcase>`` per check."""
    failures = sum(not result.passed for result in results)
    suites = ET.Element("testsuites", tests=str(len(results)), failures=str(failures))
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=suite_name,
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        time=f"{seconds:.3f}",
    )
    for result in results:
        case = ET.SubElement(suite, "testcase", classname="gaussnll.checks", name=result.check.text)
        value = result.describe(lambda number: f"{number:.6g}")
        if result.passed:
            ET.SubElement(case, "system-out").text = f"{result.check.metric} = {value}"
        else:
            message = (
                f"{result.check.metric} = {value}, expected {result.check.op} "
                f"{result.check.bound_text()}"
            )
            ET.SubElement(case, "failure", message=message, type="CheckFailed").text = message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
