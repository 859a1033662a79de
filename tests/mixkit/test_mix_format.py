"""The mix folder's one owner: names, manifest round trip, clear errors; the reader never loads the writer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mixkit.errors import MixkitError
from mixkit.mix import format as mixfmt


def test_folder_and_file_names(tmp_path):
    assert mixfmt.mix_dir("m", tmp_path) == tmp_path / "mixes" / "m"
    assert mixfmt.mix_dir(str(tmp_path / "elsewhere" / "m")) == tmp_path / "elsewhere" / "m"
    assert mixfmt.store_dir_of(tmp_path / "mixes" / "m") == tmp_path
    assert mixfmt.store_dir_of(tmp_path / "mixes" / "m", tmp_path / "other") == tmp_path / "other"
    assert mixfmt.dataset_files(3) == {
        "doc_idx": "d3_doc_idx.npy", "sample_idx": "d3_sample_idx.npy", "shuffle_idx": "d3_shuffle_idx.npy",
    }


def test_manifest_round_trip_and_fingerprint(tmp_path):
    mixfmt.save_array(tmp_path, mixfmt.DATASET_INDEX, np.array([0, 1, 1], np.int16))
    written = mixfmt.write_manifest(tmp_path, {"name": "m", "files": mixfmt.file_sha256s(tmp_path)})
    read = mixfmt.read_manifest(tmp_path)
    assert read == written and read["format"] == mixfmt.MIX_FORMAT
    body = {k: v for k, v in read.items() if k != "fingerprint"}
    assert read["fingerprint"] == mixfmt.fingerprint(body)
    np.testing.assert_array_equal(mixfmt.load_array(tmp_path / mixfmt.DATASET_INDEX), [0, 1, 1])


def test_manifest_errors(tmp_path):
    with pytest.raises(MixkitError, match="no mix named 'm'"):
        mixfmt.read_manifest(tmp_path / "m")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mix.json").write_text("{broken")
    with pytest.raises(MixkitError, match="unreadable mix manifest"):
        mixfmt.read_manifest(tmp_path / "m")
    (tmp_path / "m" / "mix.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(MixkitError, match="not a mixkit mix manifest"):
        mixfmt.read_manifest(tmp_path / "m")


def test_the_reader_does_not_load_the_writer():
    code = "import sys, mixkit.mix.stream; print('mixkit.mix.build' in sys.modules, 'mixkit.mix.plan' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
