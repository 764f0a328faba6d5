"""ProfileMeta: typed profile metadata that round-trips exactly, rejects bad input in one line, and
reads the bundled profiles (digests unchanged, so schedules made from them still match)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from schedc.errors import ProfileError
from schedc.profile import Profile
from schedc.profile_meta import PROFILE_VERSION, ProfileMeta
from schedc_runtime import load_schedule

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted((ROOT / "profiles").glob("*.profile.npz"))


def meta_dict(**changes) -> dict:
    """A valid metadata dict for 2 blocks x 3 steps, with `changes` applied (None value = drop the key)."""
    d = {
        "model": "m", "fingerprint": "sha256:00", "blocks": ["b0", "b1"], "timestep_arg": "timestep", "steps": 3,
        "timesteps": [999.0, 666.0, 333.0], "sampler": {"steps": 3, "guidance_scale": 2.0, "cfg": "batched"},
        "calibration_seeds": [0, 1], "max_age": 2, "forecast_gap": 1, "precisions": ["int8"],
        "kernels": {"int8": ["int8-matmul"]}, "probe_steps": [1, 2], "probe_samples": 1, "nonblock_flops": 10.0,
        "profile_seconds": 1.5, "versions": {"schedc": "0.1.0"}, "config": {"shard": [0, 1]},
        "cache_bytes": [64, 64], "latency": {"native": [1e-3, 2e-3], "int8": [5e-4, 1e-3]}, "device": "x86_64",
    }
    for key, value in changes.items():
        if value is None:
            d.pop(key, None)
        else:
            d[key] = value
    return d


def test_round_trip_is_exact_and_frozen():
    d = meta_dict()
    meta = ProfileMeta.from_dict(d)
    assert meta.to_dict() == d
    assert ProfileMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    assert meta.blocks == ("b0", "b1") and meta.latency["int8"] == (5e-4, 1e-3)
    with pytest.raises(TypeError):
        meta.sampler["steps"] = 4  # read-only mapping
    with pytest.raises(AttributeError):
        meta.steps = 4  # frozen dataclass


def test_optional_fields_stay_absent():
    d = meta_dict(latency=None, device=None, cache_bytes=None)
    meta = ProfileMeta.from_dict(d)
    assert meta.latency is None and meta.cache_bytes is None
    assert meta.to_dict() == d  # nothing added: the digest of an older profile does not change


def test_file_dict_carries_the_version():
    meta = ProfileMeta.from_dict(meta_dict())
    stored = meta.to_file_dict()
    assert stored["schedc_profile"] == PROFILE_VERSION
    assert ProfileMeta.from_file_dict(stored) == meta


@pytest.mark.parametrize("changes, message", [
    ({"steps": "3"}, "'steps' must be a positive integer"),
    ({"timesteps": [1.0, 2.0]}, "'timesteps' has 2 entries, expected 3"),
    ({"blocks": ["b0", "b0"]}, "distinct block names"),
    ({"cache_bytes": [1, 2, 3]}, "'cache_bytes' has 3 entries, expected 2"),
    ({"latency": {"int8": [1.0, 1.0]}}, "'native' row"),
    ({"latency": {"native": [1.0]}}, "'latency.native' has 1 entries"),
    ({"max_age": 3}, "'max_age' must be an integer in [0, 2]"),
    ({"sampler": {"steps": 5}}, "steps = 3"),
    ({"probe_steps": [7]}, "'probe_steps'"),
    ({"kernels": None}, "missing 'kernels'"),
    ({"surprise": 1}, "unknown field(s) 'surprise'"),
])
def test_validation_errors_are_one_line(changes, message):
    with pytest.raises(ProfileError) as info:
        ProfileMeta.from_dict(meta_dict(**changes))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_old_or_foreign_files_say_how_to_reprofile():
    with pytest.raises(ProfileError, match="re-profile") as info:
        ProfileMeta.from_file_dict({"schedc_profile": 0, **meta_dict()}, where="profile x.npz")
    assert "\n" not in str(info.value)
    with pytest.raises(ProfileError, match=r"profile x.npz: .*missing 'versions'.*re-profile") as info:
        ProfileMeta.from_file_dict({"schedc_profile": PROFILE_VERSION, **meta_dict(versions=None)}, where="profile x.npz")
    assert "\n" not in str(info.value)


def test_profile_file_with_stale_metadata_fails_at_load(tiny_profile, tmp_path):
    path = tiny_profile.save(tmp_path / "p.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    stored = json.loads(str(arrays["meta_json"]))
    del stored["probe_steps"]
    arrays["meta_json"] = np.array(json.dumps(stored))
    np.savez_compressed(path, **arrays)
    with pytest.raises(ProfileError, match="missing 'probe_steps'.*re-profile") as info:
        Profile.load(path)
    assert "\n" not in str(info.value)


def test_save_load_keeps_meta_and_digest(tiny_profile, tmp_path):
    loaded = Profile.load(tiny_profile.save(tmp_path / "p.npz"))
    assert loaded.meta == tiny_profile.meta
    assert loaded.digest() == tiny_profile.digest()


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_profiles_load_with_unchanged_digests(path):
    profile = Profile.load(path)
    meta = profile.meta
    assert isinstance(meta, ProfileMeta)
    assert len(meta.blocks) == profile.num_blocks and meta.steps == profile.num_steps
    with np.load(path) as data:
        stored = json.loads(str(data["meta_json"]))
    stored.pop("schedc_profile")
    assert meta.to_dict() == stored  # lossless: nothing dropped, nothing added
    # the bundled DP schedule records the digest of the profile it was solved from
    schedule = ROOT / "schedules" / f"{meta.model}-b0.40.yaml"
    if schedule.exists():
        assert profile.digest() == load_schedule(schedule).provenance["profile"]
