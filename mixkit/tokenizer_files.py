"""Where a tokenizer comes from: a ``tokenizer.json``, a tokenizer folder, or a hub id.

``--tokenizer`` names one of::

    path/to/any.json                  a ``tokenizers`` JSON file
    path/to/folder/                   a saved tokenizer (``save_pretrained``): its tokenizer.json
    OWNER/NAME[@REVISION]             a Hugging Face hub repository (also hf://OWNER/NAME[@REVISION]):
                                      its tokenizer.json through ``huggingface_hub.hf_hub_download``,
                                      so the local HF cache, ``HF_HOME`` and ``HF_HUB_OFFLINE`` work
                                      as they do for ``transformers``

and every form ends as one ``tokenizer.json`` on disk: its sha256 is the tokenizer's
identity in a store's manifest, whatever name led to it, and the fast encoder's self-test
runs on it. A local name that exists is always the local file or folder; a name that does
not exist and looks like a repository id is looked up on the hub.

EOS is the tokenizer's own: ``eos_token`` of ``tokenizer_config.json``, else of
``special_tokens_map.json`` (a string, or an ``AddedToken`` object with ``content``),
read beside the ``tokenizer.json`` (in the folder, in the hub repository, or beside a
file named ``tokenizer.json``). With neither, ``<|endoftext|>`` (GPT-2's, GPT-NeoX's and
Pythia's EOS) when the vocabulary has it.

Only fast tokenizers have a ``tokenizer.json``; a repository or folder with only a slow
(SentencePiece) tokenizer is refused with the line that converts it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixkit.errors import MixkitError
from mixkit.samples import DEFAULT_TOKENIZER

FALLBACK_EOS = "<|endoftext|>"
TOKENIZER_JSON = "tokenizer.json"
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # where eos_token is looked for, in order

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?(@[\w./-]+)?$")
_CONVERT = "convert it with transformers: AutoTokenizer.from_pretrained(NAME).save_pretrained(FOLDER), then pass FOLDER"


@dataclass(frozen=True)
class TokenizerFiles:
    """A resolved ``--tokenizer``: the ``tokenizer.json`` to load and the EOS its config names."""

    json_path: Path
    eos_token: str | None  # from the tokenizer's config files; None: none named there
    origin: str | None  # the folder or hub id it came from; None for a plain file


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def configured_eos(config_files: list[Path]) -> str | None:
    """``eos_token`` of the first config file that names one (module docstring)."""
    for path in config_files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MixkitError(f"cannot read tokenizer config {path}: {_first_line(e)}") from None
        eos: Any = data.get("eos_token") if isinstance(data, dict) else None
        if isinstance(eos, dict):
            eos = eos.get("content")
        if isinstance(eos, str) and eos:
            return eos
    return None


def looks_like_repo_id(spec: str) -> bool:
    """``OWNER/NAME[@REVISION]`` or ``NAME``, and not a file name (``*.json``) or a path (``./x``, ``/x``)."""
    return bool(_REPO_ID.match(spec)) and not spec.lower().endswith(".json")


def _local(path: Path) -> TokenizerFiles:
    if path.is_dir():
        json_path = path / TOKENIZER_JSON
        if not json_path.is_file():
            raise MixkitError(f"tokenizer folder {path} has no {TOKENIZER_JSON} (only fast tokenizers have one; {_CONVERT})")
        return TokenizerFiles(json_path, configured_eos([path / n for n in CONFIG_FILES if (path / n).is_file()]), str(path))
    siblings = [path.parent / n for n in CONFIG_FILES if (path.parent / n).is_file()] if path.name == TOKENIZER_JSON else []
    return TokenizerFiles(path, configured_eos(siblings), None)


def _hub(spec: str) -> TokenizerFiles:
    import huggingface_hub
    from huggingface_hub.utils import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, _, revision = spec.partition("@")
    try:
        json_path = Path(huggingface_hub.hf_hub_download(repo_id, TOKENIZER_JSON, revision=revision or None))
    except RepositoryNotFoundError:
        raise MixkitError(f"tokenizer {spec}: no such local file or folder, and no such hub repository (or it is private)") from None
    except RevisionNotFoundError:
        raise MixkitError(f"tokenizer {spec}: the hub repository {repo_id} has no revision {revision!r}") from None
    except LocalEntryNotFoundError as e:  # offline, or the hub unreachable, and not in the local cache
        raise MixkitError(f"tokenizer {spec}: not in the local HF cache and the hub cannot be reached "
                          f"({_first_line(e.__cause__ or e)})") from None
    except EntryNotFoundError:
        raise MixkitError(f"tokenizer {spec}: the hub repository has no {TOKENIZER_JSON} (only fast tokenizers have one; {_CONVERT})") from None
    except Exception as e:
        raise MixkitError(f"tokenizer {spec}: cannot fetch from the hub ({_first_line(e)})") from None
    # The config files of the same snapshot (the same commit) as the tokenizer.json.
    configs = []
    for name in CONFIG_FILES:
        if (json_path.parent / name).is_file():
            configs.append(json_path.parent / name)
            continue
        try:
            configs.append(Path(huggingface_hub.hf_hub_download(repo_id, name, revision=json_path.parent.name)))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            continue
        except Exception as e:
            raise MixkitError(f"tokenizer {spec}: cannot fetch {name} from the hub ({_first_line(e)})") from None
    return TokenizerFiles(json_path, configured_eos(configs), f"{repo_id}@{json_path.parent.name}")


def resolve_tokenizer(spec: str | os.PathLike | None) -> TokenizerFiles:
    """The ``tokenizer.json`` and configured EOS of ``spec`` (module docstring); None: the bundled one."""
    if spec is None:
        return TokenizerFiles(DEFAULT_TOKENIZER, None, None)
    text = str(spec)
    if text.startswith("hf://"):
        return _hub(text[len("hf://") :])
    path = Path(text)
    if path.exists():
        return _local(path)
    if isinstance(spec, str) and looks_like_repo_id(text):
        return _hub(text)
    raise MixkitError(f"tokenizer {text}: no such file or folder (expected a tokenizer.json, a tokenizer folder, or a hub id OWNER/NAME)")
