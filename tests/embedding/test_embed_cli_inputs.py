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


@pytest.mark.parametrize(
    "config, key",
    [
        ({"hidden_size": "x"}, "hidden_size"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"validation_share": 1}, "validation_share"),
        ({"cache_sizes": 0.1}, "cache_sizes"),
        ({"cache_sizes": [0]}, "cache_sizes"),
        ({"seed": -1}, "seed"),
        ({"steps": True}, "steps"),
    ],
)
def test_train_config_values_are_checked(tmp_path, trace, capsys, config, key):
    import json

    from spidercache.embedding.models import ModelConfig
    from spidercache.errors import UserError

    with pytest.raises(UserError, match=key):
        ModelConfig.from_dict(config).check()
    (tmp_path / "c.json").write_text(json.dumps(config))
    args = ("embed", "train", "--kind", "cache", "--trace", trace, "--out", tmp_path / "m")
    code, out, err = run(capsys, *args, "--config", tmp_path / "c.json")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and key in err
    assert not (tmp_path / "m").exists()


def test_train_kind_is_named_as_the_option(tmp_path, trace, capsys):
    code, _, err = run(capsys, "embed", "train", "--kind", "foo", "--trace", trace, "--out", tmp_path / "m")
    assert code == 2 and err.startswith("error: --kind must be cache or prefetch")


def test_negative_seed_is_one_line_in_every_command(tmp_path, trace, capsys):
    for args in (
        ("gen", "-o", tmp_path / "g.npy", "--batches", "1"),
        ("family", "zipf-0.8", "-o", tmp_path / "f.npy", "--requests", "100"),
        ("sample", trace, "-o", tmp_path / "s"),
        ("train", "--kind", "cache", "--trace", trace, "--out", tmp_path / "m"),
        ("headroom", "--requests", "1000"),
    ):
        code, out, err = run(capsys, "embed", *args, "--seed", "-1")
        assert code == 2 and err == "error: seed must be at least 0, got -1\n" and not out, args
