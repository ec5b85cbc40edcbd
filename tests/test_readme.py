"""The README's lab section runs as written (against the emulator on a free port)."""

import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def section_blocks(heading: str) -> dict[str, str]:
    """The first ```bash and ```python blocks under a ``## heading`` of README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        blocks.setdefault(lang, body)
    return blocks


def test_lab_section_runs_as_written(tmp_path):
    blocks = section_blocks("The lab: driving the macro")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    bin_dir = Path(sys.executable).parent
    script = "\n".join([
        "set -euo pipefail",
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",   # the emulator, whatever happens
        f'export PATH="{bin_dir}:$PATH"',
        f"export LSM_HW_RESOURCE=TCPIP0::127.0.0.1::{port}::SOCKET",
        blocks["bash"].replace("5025", port).replace("hw/limits.example.toml",
                                                      str(ROOT / "hw" / "limits.example.toml")),
        "python - <<'PYTHON'",
        blocks["python"].replace("5025", port),
        "PYTHON",
        "kill %1",
    ])
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    for name in ("limits.toml", "lab.sqlite", "map.h5", "map.png", "inputs.npz", "codes.npz"):
        assert (tmp_path / name).exists(), name
    last = run.stdout.strip().splitlines()[-1]
    assert '"status": "done"' in last and '"done": 456' in last
