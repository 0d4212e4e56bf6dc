"""Rule files are read by libyaml's parser where PyYAML has it, and a file it refuses again by
the pure-Python one: both must give the same data and the same lines, and an error the
pure-Python parser's message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from automator import yamlfile

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*REPO.glob("rules/*.yaml"), *REPO.glob("examples/**/*.yaml")])


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")
@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.relative_to(REPO)))
def test_both_parsers_read_a_rule_file_alike(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = yamlfile.load_yaml(path)
    monkeypatch.setattr(yamlfile, "_FAST_LOADER", yaml.SafeLoader)

    assert yamlfile.load_yaml(path) == fast
    assert fast[1]  # lines were recorded


def test_a_file_libyaml_refuses_gets_the_pure_python_parsers_message(tmp_path: Path) -> None:
    path = tmp_path / "rule.yaml"
    path.write_text("name: x\ntrigger:\n  event: a\n latest_per: cart_id\n")

    with pytest.raises(yaml.MarkedYAMLError) as raised:
        yamlfile.load_yaml(path)

    assert raised.value.problem == "expected <block end>, but found '<block mapping start>'"
    assert raised.value.problem_mark is not None and raised.value.problem_mark.line == 3
