"""Checkpoints in a sweep's storage: each trial's own (in Tune's folders) and the shared prefixes.

A trial checkpoint is a folder of `CHECKPOINT_FILES`: the training state (`state.pt`, read back with
`weights_only=True`), the records so far (`records.json`) and `meta.json` (trial id, epoch, the Ray node
that wrote it, how many first epochs came from a shared prefix). Tune uploads the files one after the
other, so a checkpoint in storage is complete only when all three are there; `newest_checkpoints` finds
each trial's newest complete one after a crash.

A prefix checkpoint (`prefixes/<key>/`) is the state after the first epochs that several trials share
(`config.sharing`); `meta.json` is written last, as its completion marker.

No ray import: the trainable hands these functions folders, the driver a `Store`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import pyarrow.fs as pafs

from ..config.spec import TrialSpec
from ..engine.checkpoint import dump_state, load_checkpoint, load_state, save_checkpoint
from ..errors import CpsweepError
from ..results.records import EpochRecord, records_from_json, records_to_json, trained
from ..results.store import Store

CHECKPOINT_FILES = ("state.pt", "records.json", "meta.json")


def write_checkpoint(folder: str, state: dict[str, Any], records: list[EpochRecord], trial_id: str,
                     node: str = "", shared: int = 0) -> None:
    save_checkpoint(state, os.path.join(folder, "state.pt"))
    with open(os.path.join(folder, "records.json"), "w") as f:
        f.write(records_to_json(records))
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"trial_id": trial_id, "epoch": state["epoch"], "node": node, "shared_epochs": shared}, f)


def read_checkpoint(folder: str) -> tuple[dict[str, Any], list[EpochRecord], int]:
    """A checkpoint's training state, records so far, and how many of them came from a shared prefix."""
    state = load_checkpoint(os.path.join(folder, "state.pt"))
    with open(os.path.join(folder, "records.json")) as f:
        records = records_from_json(f.read())
    with open(os.path.join(folder, "meta.json")) as f:
        shared = int(json.load(f).get("shared_epochs", 0))
    return state, records, shared


def save_prefix(store: Store, key: str, state: dict[str, Any], records: list[EpochRecord]) -> None:
    """A prefix checkpoint (`prefixes/<key>/`): the training state after `state["epoch"]` epochs and their
    records, for the trials that branch there; `meta.json` last, as the completion marker."""
    store.write_bytes(dump_state(state), "prefixes", key, "state.pt")
    store.write_bytes(records_to_json(records).encode(), "prefixes", key, "records.json")
    meta = {"key": key, "epoch": state["epoch"], "trial_id": records[-1].trial_id if records else ""}
    store.write_bytes(json.dumps(meta).encode(), "prefixes", key, "meta.json")


def load_prefix(store: Store, key: str, trial: TrialSpec) -> tuple[dict[str, Any], list[EpochRecord]]:
    """A prefix checkpoint, made `trial`'s own: its records renamed, its state marked as this trial's (the
    plan matched the prefix keys, so the state is the one this trial would have reached)."""
    state = load_state(store.read_bytes("prefixes", key, "state.pt"))
    records = records_from_json(store.read_bytes("prefixes", key, "records.json"), trial.trial_id)
    if len(trained(records)) != state["epoch"]:
        raise CpsweepError(f"prefix checkpoint {store.uri}/prefixes/{key} is inconsistent "
                           f"({len(trained(records))} records for epoch {state['epoch']}); remove it and relaunch")
    state["trial"] = trial.to_dict()
    return state, records


def stored_prefixes(store: Store) -> set[str]:
    """Keys of the complete prefix checkpoints in the results folder."""
    if not store.exists("prefixes"):
        return set()
    with store.errors("list the prefix checkpoints in"):
        folders = store.fs.get_file_info(pafs.FileSelector(store.path("prefixes")))
        keys = [f.base_name for f in folders if f.type == pafs.FileType.Directory]
        metas = store.fs.get_file_info([store.path("prefixes", k, "meta.json") for k in keys])
    return {k for k, m in zip(keys, metas) if m.type == pafs.FileType.File and m.size}


def newest_checkpoints(store: Store, ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Each trial's newest complete checkpoint from earlier launches: trial id -> (epoch, checkpoint URI)."""
    best: dict[str, tuple[int, str]] = {}
    if not store.exists("tune"):
        return {}
    wanted = set(ids)
    with store.errors("list the checkpoints in"):
        for launch in store.fs.get_file_info(pafs.FileSelector(store.path("tune"))):
            if launch.type != pafs.FileType.Directory:
                continue
            for tid in wanted:
                folder = f"{launch.path}/{tid}"
                infos = store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
                for ckpt in infos:
                    if not ckpt.base_name.startswith("checkpoint_"):
                        continue
                    files = store.fs.get_file_info([f"{ckpt.path}/{name}" for name in CHECKPOINT_FILES])
                    if any(info.type != pafs.FileType.File or not info.size for info in files):
                        continue  # cut off while Tune uploaded it, one file after the other (a killed driver or node)
                    try:
                        with store.fs.open_input_stream(f"{ckpt.path}/meta.json") as f:
                            epoch = int(json.loads(f.read())["epoch"])
                    except (OSError, ValueError, KeyError):
                        continue  # an incomplete checkpoint
                    if epoch > best.get(tid, (-1, ""))[0]:
                        rel = ckpt.path[len(store.root):]
                        best[tid] = (epoch, store.uri_of(rel.strip("/")))
    return best
