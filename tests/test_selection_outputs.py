"""Writers round-trip: subset.csv, fairseq TSV, s3prl len_for_bucket, selection.json, report."""

import csv
import json

import numpy as np
import soundfile as sf

from common.hashing import file_sha256
from common.manifest import read_manifest
from selection.outputs import write_fairseq_tsv, write_len_for_bucket_csv, write_selection_json, write_subset_csv
from selection.report import unit_kl, write_report
from selection.selectors import DSIRSelector
from selection.synthetic import synthetic_corpus

HEADER = "ID,duration,wav,spk_id,wrd,domain,engine,voice,lang,aug"


def _pool(tmp_path):
    rng = np.random.default_rng(0)
    lines = [HEADER]
    for i, domain in enumerate(["formant", "neural", "concat", "neural", "reverb"]):
        folder = tmp_path / "data" / "pool" / domain
        folder.mkdir(parents=True, exist_ok=True)
        n = 1600 * (i + 1)
        sf.write(folder / f"p{i}.flac", 0.1 * rng.normal(size=n), 16000)
        lines.append(f'p{i},{n / 16000},$data_root/pool/{domain}/p{i}.flac,s{i},"hi, {i}",'
                     f"{domain},e,v,en,none")
    (tmp_path / "pool.csv").write_text("\n".join(lines) + "\n")
    return read_manifest(tmp_path / "pool.csv", data_root=tmp_path / "data")


def test_subset_csv_reloads_with_same_columns_and_rows(tmp_path):
    pool = _pool(tmp_path)
    write_subset_csv(pool, ["p3", "p1"], tmp_path / "out" / "subset.csv")
    subset = read_manifest(tmp_path / "out" / "subset.csv", data_root=tmp_path / "data")
    assert subset.fieldnames == pool.fieldnames and subset.ids == ["p3", "p1"]
    assert subset.row("p3") == pool.row("p3")
    assert subset.wav_path("p1") == pool.wav_path("p1")


def test_fairseq_tsv_counts_match_files(tmp_path):
    pool = _pool(tmp_path)
    root = tmp_path / "data"
    write_fairseq_tsv(pool, pool.ids, tmp_path / "train.tsv", root)
    lines = (tmp_path / "train.tsv").read_text().splitlines()
    assert lines[0] == str(root.resolve())
    for line, utt_id in zip(lines[1:], pool.ids):
        rel, samples = line.split("\t")
        assert not rel.startswith("/")
        assert int(samples) == sf.info(root / rel).frames == len(sf.read(pool.wav_path(utt_id))[0])


def test_len_for_bucket_csv(tmp_path):
    pool = _pool(tmp_path)
    root = tmp_path / "data"
    write_len_for_bucket_csv(pool, ["p2", "p0"], tmp_path / "s3prl.csv", root)
    with open(tmp_path / "s3prl.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["", "file_path", "length", "label"]
    assert rows[1] == ["0", "pool/concat/p2.flac", "4800", "hi, 2"]
    assert rows[2][:3] == ["1", "pool/formant/p0.flac", "1600"]


def test_selection_json_and_report(tmp_path):
    domains = ["formant", "neural", "concat"]
    pool = synthetic_corpus(300, domains, [0.45, 0.1, 0.45], n_clusters=50, mean_length=80, seed=1)
    target = synthetic_corpus(30, domains, [0, 1, 0], n_clusters=50, mean_length=80, seed=2)
    manifest = pool.manifest()
    result = DSIRSelector(seed=3).select(manifest, pool.units, 0.01, target.units)
    pool.units.save(tmp_path / "units.npz")
    write_subset_csv(manifest, result.ids, tmp_path / "subset.csv")
    figures = write_report(tmp_path / "report.png", manifest, result.ids, target.manifest(),
                           pool.units, target.units)
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kl = figures["unit_kl_to_target"]
    assert kl["subset"]["order_1"] < kl["pool"]["order_1"]
    assert figures["domain_hours"]["target"].keys() == {"neural"}
    write_selection_json(tmp_path / "selection.json", result,
                         {"units": tmp_path / "units.npz", "subset": tmp_path / "subset.csv"},
                         seed=3, extra={"report": figures})
    record = json.loads((tmp_path / "selection.json").read_text())
    assert record["selector"] == "DSIRSelector" and record["settings"]["seed"] == 3
    assert record["utterances"] == len(result.ids) and record["hours"] <= record["budget_hours"]
    assert record["inputs"]["units"]["sha256"] == file_sha256(tmp_path / "units.npz")
    assert record["report"] == json.loads(json.dumps(figures))
    subset_units = pool.units.subset(result.ids)
    for order in (1, 2):  # the report's divergences are those of the selected units; bigrams also closer to target
        assert kl["subset"][f"order_{order}"] == unit_kl(target.units, subset_units, orders=(order,))
        assert kl["pool"][f"order_{order}"] == unit_kl(target.units, pool.units, orders=(order,))
    assert kl["subset"]["order_2"] < kl["pool"]["order_2"]
    assert not list(tmp_path.glob(".*"))  # temporaries renamed away
    assert unit_kl(target.units, target.units) < 0.05
