"""The distillation hparams files: one base, variants that hold only what differs, the same resolved settings."""

import json
from pathlib import Path

import pytest
import ruamel.yaml
from hyperpyyaml import resolve_references

from common.hparams import load_hparams, merged_text, merged_tree

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "recipes" / "distillation" / "base.yaml"
VARIANTS = sorted(ROOT.glob("recipes/*/distillation/hparams/*.yaml"))
# Every distillation file resolved before the files extended one base (commit 7522c64), by
# resolved_settings below: the refactoring must give the same value to every key.
BEFORE = json.loads((ROOT / "tests" / "fixtures" / "distillation_hparams_resolved.json").read_text())
# Keys the base gives every file that some files did not have before; none changes what the run does,
# but target_statistics: its default (pool) standardises the targets with a sample of the pool instead of
# the subset's own statistics (the recipes that set normalize_targets: True).
NEW_KEYS = {
    "total_steps",          # None: number_of_epochs decides, as when the key was absent
    "teachers_folder",      # the SynthDomains HuBERT-style variants inherit the Whisper folder, unread
    "student_layers", "target_layers", "freeze_cnn", "cnn_grad_mult",  # not read by a FitHuBERT student
    # the objective: a choice among objectives (the file's former `loss`) and the settings of the others
    "objective", "objectives", "hint_weights", "input_mask_prob", "input_mask_length", "unit_layer", "unit_units",
    "unit_overrides", "unit_codebook_seed", "unit_head",
    # normalize_targets' statistics: a sample of the pool (the same for every subset) by default
    "target_statistics", "target_statistics_hours", "target_statistics_seed", "target_statistics_folder",
    "heldout_curve_splits",  # the learning curve: none by default
}


# Values changed on purpose since the record: the SynthDomains recipes also score the held-out
# target audio of voices absent from target.csv.
CHANGED = {"heldout_splits": ["asr_test_target", "asr_test_target_unseen_voice", "asr_test_in"]}


def plain(node):
    """A YAML tree as plain values, each tag kept beside its value (``!ref`` left unresolved shows up)."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, dict):
        out = {str(k): plain(v) for k, v in node.items()}
        return {"__tag": tag, **out} if tag else out
    if isinstance(node, list):
        out = [plain(v) for v in node]
        return {"__tag": tag, "items": out} if tag else out
    if hasattr(node, "value") and tag:
        return {"__tag": tag, "value": plain(node.value)}
    return node if node is None or isinstance(node, (bool, int, float)) else str(node)


def resolved_settings(text):
    """Every key of an hparams text with its references resolved (placeholders filled with a marker)."""
    raw = ruamel.yaml.YAML().load(text)
    placeholders = {key: "PLACEHOLDER" for key, value in raw.items()
                    if getattr(getattr(value, "tag", None), "value", None) == "!PLACEHOLDER"}
    return plain(ruamel.yaml.YAML().load(resolve_references(text, placeholders).getvalue()))


def test_every_distillation_file_is_in_the_record():
    assert sorted(str(path.relative_to(ROOT)) for path in VARIANTS) == sorted(BEFORE)


@pytest.mark.parametrize("path", VARIANTS, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_a_file_resolves_as_it_did_before_the_base(path):
    before = dict(BEFORE[str(path.relative_to(ROOT))])
    after = resolved_settings(merged_text(path))
    assert after["objectives"][after["objective"]] == before.pop("loss")  # the loss is now the chosen objective
    if "SynthDomains" in str(path):
        before.update(CHANGED)
    assert {key: after.get(key) for key in before} == before
    assert set(after) - set(before) <= NEW_KEYS


@pytest.mark.parametrize("path", VARIANTS, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_a_variant_extends_the_base_and_holds_only_what_differs(path):
    chain, current = [], path
    while True:
        tree = ruamel.yaml.YAML().load(current.read_text(encoding="utf-8"))
        if "extends" not in tree:
            break
        chain.append(current)
        current = (current.parent / tree["extends"]).resolve()
    assert current == BASE.resolve(), f"{path} does not extend {BASE}"
    own = ruamel.yaml.YAML().load(path.read_text(encoding="utf-8"))
    parent = merged_tree(path.parent / own.pop("extends"))
    dump = ruamel.yaml.YAML()
    repeated = [key for key, value in own.items() if key in parent and _text(dump, value) == _text(dump, parent[key])
                and getattr(getattr(value, "tag", None), "value", None) != "!PLACEHOLDER"]  # a placeholder may be re-stated
    assert not repeated, f"{path.name} repeats its base's {repeated}"


def _text(dump, value):
    import io

    stream = io.StringIO()
    dump.dump({"v": value}, stream)
    return stream.getvalue()


def test_a_variant_key_replaces_the_whole_block_and_new_keys_resolve_in_order(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\nteacher: !ref <folder>/teacher\nfolder: results\n"
        "loss: !name:lobes.losses.l1_cosine_loss\n    cos_weight: 1.0\n")
    (tmp_path / "variant.yaml").write_text(
        "extends: base.yaml\nname: variant\nroot: mine\nnested: !ref <root>/x\nteacher: !ref <nested>/teacher\n"
        "loss: !name:lobes.losses.hint_mse_loss\n    weights: [1.0]\n")
    hparams = load_hparams(tmp_path / "variant.yaml", {"root": "given"})
    assert hparams["name"] == "variant" and hparams["teacher"] == "given/x/teacher"
    assert hparams["loss"].func.__name__ == "hint_mse_loss" and hparams["loss"].keywords == {"weights": [1.0]}
    assert list(merged_tree(tmp_path / "variant.yaml")) == ["name", "root", "nested", "teacher", "folder", "loss"]


def test_a_chain_that_loops_or_names_no_file_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nx: 1\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\ny: 2\n")
    with pytest.raises(ValueError, match="comes back"):
        merged_text(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ValueError, match="missing.yaml is not a file"):
        merged_text(tmp_path / "c.yaml")
