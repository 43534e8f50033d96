"""`embed` commands: what they say they wrote, and bad values that end in one `error:` line."""

import numpy as np
import pytest


def run(capsys, *args) -> tuple[int, str, str]:
    """The real entry point, in this process; (exit status, stdout, stderr)."""
    from spidercache.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture
def trace(tmp_path):
    np.save(tmp_path / "t.npy", np.arange(200, dtype=np.int64) % 17)
    return tmp_path / "t.npy"


def test_optgen_names_the_file_it_wrote(tmp_path, trace, capsys):
    code, out, _ = run(capsys, "embed", "optgen", trace, "-o", tmp_path / "labx")
    assert code in (0, None) and f"wrote {tmp_path / 'labx.npy'}:" in out
    assert (tmp_path / "labx.npy").exists() and not (tmp_path / "labx").exists()
    (tmp_path / "d").mkdir()
    code, out, err = run(capsys, "embed", "optgen", trace, "-o", tmp_path / "d")
    assert code == 2 and err.startswith("error: output path is a directory") and not out
    assert not (tmp_path / "d.npy").exists()
