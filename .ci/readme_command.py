"""Print the fenced ``bash`` block under a README heading, so CI runs exactly what the README
tells a user to run.

Usage: python3 .ci/readme_command.py README.md "Run the tests"
Exits with 1 when the heading or its block is missing.
"""

import re
import sys


def block_under(text: str, heading: str) -> str | None:
    """The first ```bash block after the Markdown heading named ``heading`` and before the next
    heading of any level, or None."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if re.fullmatch(rf"#+\s+{re.escape(heading)}\s*", line)), None)
    if start is None:
        return None
    body: list[str] = []
    inside = False
    for line in lines[start + 1:]:
        if not inside and line.startswith("#"):
            return None
        if not inside and line.strip() in ("```bash", "```sh"):
            inside = True
        elif inside and line.strip() == "```":
            return "\n".join(body)
        elif inside:
            body.append(line)
    return None


if __name__ == "__main__":
    readme, heading = sys.argv[1], sys.argv[2]
    with open(readme, encoding="utf-8") as f:
        command = block_under(f.read(), heading)
    if not command:
        sys.exit(f"{readme}: no ```bash block under the heading {heading!r}")
    print(command)
