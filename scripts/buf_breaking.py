"""`buf breaking` between two images, where setting a language option for the first time is allowed.

The FILE rules flag any change of a file option such as `go_package` or
`java_package`, and rightly: changing one moves every generated type of that
language. Setting one that was unset is the step that gives a language its
generated code a home in the first place; it changes nothing on the wire and
nothing for the Python client. So a finding of a `FILE_SAME_*` rule passes
when the option was not set in the previous image, and every other finding
fails as `buf breaking` would.

    python scripts/buf_breaking.py CURRENT.binpb PREVIOUS.binpb
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

BUF = str(Path(sys.executable).with_name("buf"))
OPTION_RULE = re.compile(r'File option "(\w+)" changed from ')


def unset_options(image: Path) -> dict[str, set[str]]:
    """For each file of a buf image, the file options it does not set."""
    files = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes()).file
    every = {field.name for field in descriptor_pb2.FileOptions.DESCRIPTOR.fields}
    return {
        file.name: every - {field.name for field, _ in file.options.ListFields()} for file in files
    }


def refused(current: Path, previous: Path) -> list[str]:
    """`buf breaking`'s findings, less first-time language options; each as buf prints it."""
    result = subprocess.run(
        [BUF, "breaking", str(current), "--against", str(previous), "--error-format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 100):  # 100: breaking changes found
        raise SystemExit(f"buf breaking failed: {result.stderr.strip()}")
    unset = unset_options(previous)
    findings = []
    for line in result.stdout.splitlines():
        finding = json.loads(line)
        option = OPTION_RULE.match(finding["message"])
        first_time = (
            finding["type"].startswith("FILE_SAME_")
            and option is not None
            and option.group(1) in unset.get(finding["path"], set())
        )
        if not first_time:
            findings.append(f"{finding['path']}:{finding['start_line']}: {finding['message']}")
    return findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("current", type=Path)
    parser.add_argument("previous", type=Path)
    arguments = parser.parse_args()
    findings = refused(arguments.current, arguments.previous)
    for finding in findings:
        print(finding)
    if findings:
        raise SystemExit(f"{len(findings)} breaking change(s)")


if __name__ == "__main__":
    main()
