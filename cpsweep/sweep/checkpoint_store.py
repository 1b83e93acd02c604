"""Checkpoints in a sweep's storage: each trial's own (in Tune's folders) and the shared prefixes.

A trial checkpoint is a folder of `CHECKPOINT_FILES`: the training state (`state.pt`, written and read by
the engine's `trial_state.py`, `weights_only=True`), the records so far (`records.json`) and `meta.json`
(trial id, epoch, the Ray node that wrote it, how many first epochs came from a shared prefix, and the
other two files' sizes). Tune copies the files to storage without making the copy atomic, so a checkpoint
in storage is complete only when all three are there at the sizes meta.json records;
`newest_checkpoints` finds each trial's newest complete one after a crash, and a checkpoint that still
cannot be read starts its trial from its prefix or from scratch (`trainable.starting_point`).

A prefix checkpoint (`prefixes/<key>/`) is the state after the first epochs that several trials share
(`config.sharing`); `meta.json` is written last, as its completion marker, with the others' sizes.

No ray import: the trainable hands these functions folders, the driver a `Store`.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any, Mapping, Sequence

import pyarrow.fs as pafs

from ..config.spec import TrialSpec
from ..engine.trial_state import dump_state, load_state, load_state_file, save_state_file
from ..errors import CpsweepError
from ..storage.records import EpochRecord, records_from_json, records_to_json, trained
from ..storage.store import Store

CHECKPOINT_FILES = ("state.pt", "records.json", "meta.json")


class DamagedCheckpoint(CpsweepError):
    """A checkpoint whose files are not as written: a size other than meta.json records (cut short while it
    was copied), or records that do not match the state."""


# what a checkpoint file that was cut short or damaged raises when read: torch's reader (RuntimeError), its
# unpickler, JSON, a missing key, `DamagedCheckpoint` (a storage error is not one: Tune retries the trial)
DAMAGED = (RuntimeError, ValueError, EOFError, KeyError, TypeError, pickle.UnpicklingError, DamagedCheckpoint)


def write_checkpoint(folder: str, state: dict[str, Any], records: list[EpochRecord], trial_id: str,
                     node: str = "", shared: int = 0) -> None:
    """A trial checkpoint's files; meta.json records the others' sizes, so that a copy cut short is known
    (`_last_complete` passes over it, `read_checkpoint` refuses it)."""
    save_state_file(state, os.path.join(folder, "state.pt"))
    with open(os.path.join(folder, "records.json"), "w") as f:
        f.write(records_to_json(records))
    sizes = {name: os.path.getsize(os.path.join(folder, name)) for name in CHECKPOINT_FILES[:2]}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"trial_id": trial_id, "epoch": state["epoch"], "node": node, "shared_epochs": shared,
                   "sizes": sizes}, f)


def cut_short(meta: Mapping[str, Any], sizes: Mapping[str, int], where: str) -> DamagedCheckpoint | None:
    """The error for the first file whose size (`sizes`: file name -> bytes found) is not the one meta.json
    recorded, a copy cut short; None when every one is, or when meta.json records none (checkpoints written
    before 2026-12-08)."""
    for name, size in (meta.get("sizes") or {}).items():
        if sizes.get(name) != size:
            return DamagedCheckpoint(f"{where}/{name} holds {sizes.get(name)} bytes, not the {size} written")
    return None


def read_checkpoint(folder: str) -> tuple[dict[str, Any], list[EpochRecord], int]:
    """A checkpoint's training state, records so far, and how many of them came from a shared prefix.

    Raises:
        one of DAMAGED: a file cut short or unreadable (the caller starts from an earlier point)."""
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    damaged = cut_short(meta, {name: os.path.getsize(os.path.join(folder, name)) for name in CHECKPOINT_FILES[:2]},
                        folder)
    if damaged:
        raise damaged
    state = load_state_file(os.path.join(folder, "state.pt"))
    with open(os.path.join(folder, "records.json")) as f:
        records = records_from_json(f.read())
    return state, records, int(meta.get("shared_epochs", 0))


def save_prefix(store: Store, key: str, state: dict[str, Any], records: list[EpochRecord]) -> None:
    """A prefix checkpoint (`prefixes/<key>/`): the training state after `state["epoch"]` epochs and their
    records, for the trials that branch there; `meta.json` last, as the completion marker, with the other
    files' sizes."""
    data, text = dump_state(state), records_to_json(records).encode()
    store.write_bytes(data, "prefixes", key, "state.pt")
    store.write_bytes(text, "prefixes", key, "records.json")
    meta = {"key": key, "epoch": state["epoch"], "trial_id": records[-1].trial_id if records else "",
            "sizes": {"state.pt": len(data), "records.json": len(text)}}
    store.write_bytes(json.dumps(meta).encode(), "prefixes", key, "meta.json")


def load_prefix(store: Store, key: str, trial: TrialSpec) -> tuple[dict[str, Any], list[EpochRecord]]:
    """A prefix checkpoint, made `trial`'s own: its records renamed, its state marked as this trial's (the
    plan matched the prefix keys, so the state is the one this trial would have reached).

    Raises:
        OSError or one of DAMAGED: the prefix is gone, cut short or unreadable (the trial trains it again)."""
    meta = json.loads(store.read_bytes("prefixes", key, "meta.json"))
    data, text = store.read_bytes("prefixes", key, "state.pt"), store.read_bytes("prefixes", key, "records.json")
    damaged = cut_short(meta, {"state.pt": len(data), "records.json": len(text)},
                        f"prefix checkpoint {store.uri}/prefixes/{key}")
    if damaged:
        raise damaged
    state = load_state(data)
    records = records_from_json(text, trial.trial_id)
    if len(trained(records)) != state["epoch"]:
        raise DamagedCheckpoint(f"prefix checkpoint {store.uri}/prefixes/{key} is inconsistent "
                                f"({len(trained(records))} records for epoch {state['epoch']})")
    state["trial"] = trial.to_dict()
    return state, records


def stored_prefixes(store: Store) -> set[str]:
    """Keys of the complete prefix checkpoints in the results folder (one recursive listing)."""
    with store.errors("list the prefix checkpoints in"):
        infos = store.fs.get_file_info(pafs.FileSelector(store.path("prefixes"), recursive=True,
                                                         allow_not_found=True))
    base = store.path("prefixes") + "/"
    return {i.path[len(base):].split("/")[0] for i in infos
            if i.base_name == "meta.json" and i.type == pafs.FileType.File and i.size
            and i.path[len(base):].count("/") == 1}


def newest_checkpoints(store: Store, ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Each trial's newest complete checkpoint from earlier launches: trial id -> (epoch, checkpoint URI).

    Storage requests: one listing of `tune/`, one of each launch folder's trial folders, then for each of
    `ids` that a launch folder holds, one recursive listing of its folder and one read of the `meta.json`
    of its last complete checkpoint there: nothing per trial that has no checkpoint."""
    wanted = set(ids)
    best: dict[str, tuple[int, str]] = {}
    with store.errors("list the checkpoints in"):
        launches = store.fs.get_file_info(pafs.FileSelector(store.path("tune"), allow_not_found=True))
        for launch in launches:
            if launch.type != pafs.FileType.Directory or not wanted:
                continue
            held = [f for f in store.fs.get_file_info(pafs.FileSelector(launch.path))
                    if f.type == pafs.FileType.Directory and f.base_name in wanted]
            for folder in held:
                found = _last_complete(store, folder.path)
                if found is not None and found[0] > best.get(folder.base_name, (-1, ""))[0]:
                    best[folder.base_name] = found
    return best


def _last_complete(store: Store, folder: str) -> tuple[int, str] | None:
    """The newest checkpoint in one trial folder of one launch with all of `CHECKPOINT_FILES` (Tune
    uploads them one after the other: a killed driver or node can cut a checkpoint off): (epoch, URI)."""
    files: dict[str, dict[str, int]] = {}
    for info in store.fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
        parent, _, name = info.path[len(folder) + 1:].rpartition("/")
        if parent.startswith("checkpoint_") and "/" not in parent and info.type == pafs.FileType.File:
            files.setdefault(parent, {})[name] = info.size or 0
    for ckpt in sorted(files, reverse=True):  # checkpoint_000012: Tune numbers them in order
        if not all(files[ckpt].get(name) for name in CHECKPOINT_FILES):
            continue
        try:
            with store.fs.open_input_stream(f"{folder}/{ckpt}/meta.json") as f:
                meta = json.loads(f.read())
            epoch = int(meta["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an incomplete checkpoint
        if cut_short(meta, files[ckpt], f"{folder}/{ckpt}"):
            continue  # a file cut short while it was copied: the one before it
        return epoch, store.uri_of(f"{folder}/{ckpt}"[len(store.root):].strip("/"))
    return None
