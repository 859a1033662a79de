"""``hf://datasets/OWNER/NAME/PATH``: files of a hub dataset repository, read through fsspec (huggingface_hub's
file system), not as a ``datasets`` builder; ``hf://OWNER/NAME[/CONFIG][:SPLIT]`` stays a hub dataset."""

from __future__ import annotations

import fsspec

from mixkit import readers
from mixkit.readers import HubDataset, RemoteFile, expand_sources


def test_hub_repository_files_are_fsspec_files(tmp_path, monkeypatch):
    """A local file system stands in for the hub's (the tests have no hub access); the routing and
    the glob expansion are what is tested."""
    repo = tmp_path / "datasets" / "bigcode" / "starcoderdata" / "python"
    repo.mkdir(parents=True)
    for name in ("train-00001.parquet", "train-00000.parquet"):
        (repo / name).write_bytes(b"PAR1")
    local = fsspec.filesystem("file")

    class StandIn(type(local)):
        protocol = ("hf",)

        def unstrip_protocol(self, path):
            return "hf://" + str(path)[len(str(tmp_path)) + 1:]

    fs = StandIn()
    monkeypatch.setattr(readers, "_filesystem",
                        lambda url: (fs, str(tmp_path / url[len("hf://"):])))
    got = expand_sources(["hf://datasets/bigcode/starcoderdata/python/*.parquet"])
    assert got == [RemoteFile("hf://datasets/bigcode/starcoderdata/python/train-00000.parquet"),
                   RemoteFile("hf://datasets/bigcode/starcoderdata/python/train-00001.parquet")]
    assert expand_sources(["hf://TIGER-Lab/MathInstruct:train"]) == [HubDataset("TIGER-Lab/MathInstruct", None, "train")]


def test_the_hf_protocol_is_huggingface_hubs_file_system():
    fs, path = fsspec.core.url_to_fs("hf://datasets/bigcode/starcoderdata/python/x.parquet")
    assert type(fs).__name__ == "HfFileSystem" and path == "datasets/bigcode/starcoderdata/python/x.parquet"
