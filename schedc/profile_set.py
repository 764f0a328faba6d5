"""One profile file for many sampler settings: a Profile per (guidance scale, step count).

Why: a static schedule must hold at the settings it will be run at, and users run one model at several
guidance scales and step counts. `schedc profile --guidance-scale 1.5,3,5 --steps 25,50` measures every
setting on the same calibration seeds and writes them into one file; `schedc solve --for mean|worst`
compiles one schedule scored at all the settings of one step count (a schedule's decisions are per step,
so each step count gets its own schedule, from the same file).

File: one .npz; member `settings_json` lists the settings, and setting i's arrays are the members
`s<i>/<name>` (exactly what a single profile's file holds, under a prefix), each read through the same
bounded reader and checks as a single profile. A file of one setting is a plain profile file.
Merging adds each setting's sums and counts (shards of the same settings on disjoint seeds).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from schedc.atomic import atomic_savez
from schedc.errors import ProfileError
from schedc.profile import Profile
from schedc.profile_checks import MAX_SETTINGS, SET_KEY, Prefixed, open_profile_file, parse_meta

SET_VERSION = 1
_SAME = ("model", "fingerprint", "blocks", "precisions")  # meta fields every setting shares (max age follows the steps)


def setting_of(profile: Profile) -> tuple[float, int]:
    """(guidance scale, steps) of a profile's sampler."""
    return float(profile.meta.sampler.get("guidance_scale", 0.0)), int(profile.num_steps)


def describe(setting: tuple[float, int]) -> str:
    return f"g={setting[0]:g}, {setting[1]} steps"


@dataclass(frozen=True)
class ProfileSet:
    """Profiles of one model at distinct (guidance scale, step count) settings, sorted by steps then scale."""

    profiles: tuple[Profile, ...]

    def __post_init__(self) -> None:
        profiles = tuple(self.profiles)
        if not profiles or not all(isinstance(p, Profile) for p in profiles):
            raise ProfileError("a profile set needs at least one Profile")
        if len(profiles) > MAX_SETTINGS:
            raise ProfileError(f"a profile set holds at most {MAX_SETTINGS} settings, got {len(profiles)}")
        first = profiles[0].meta
        for p in profiles[1:]:
            for key in _SAME:
                if getattr(p.meta, key) != getattr(first, key):
                    raise ProfileError(f"the settings of one profile file must share the model and profiler options: "
                                       f"{key} differs ({describe(setting_of(p))})")
        keys = [setting_of(p) for p in profiles]
        if len(set(keys)) != len(keys):
            raise ProfileError("a profile set has the same setting twice")
        object.__setattr__(self, "profiles", tuple(sorted(profiles, key=lambda p: (setting_of(p)[1], setting_of(p)[0]))))

    @property
    def settings(self) -> tuple[tuple[float, int], ...]:
        return tuple(setting_of(p) for p in self.profiles)

    @property
    def step_counts(self) -> tuple[int, ...]:
        return tuple(sorted({s for _, s in self.settings}))

    def select(self, guidance_scale: float | None = None, steps: int | None = None) -> tuple[Profile, ...]:
        """The profiles at `guidance_scale` and/or `steps` (None: any); a setting not measured is an error."""
        chosen = tuple(p for p in self.profiles
                       if (guidance_scale is None or abs(setting_of(p)[0] - guidance_scale) < 1e-9)
                       and (steps is None or setting_of(p)[1] == steps))
        if not chosen:
            want = ", ".join(x for x in (None if guidance_scale is None else f"g={guidance_scale:g}",
                                        None if steps is None else f"{steps} steps") if x)
            have = "; ".join(describe(s) for s in self.settings)
            raise ProfileError(f"the profile did not measure {want} (it has {have})")
        return chosen

    def digest(self) -> str:
        """One setting: the profile's own digest (schedules compiled from it keep matching); several: of all."""
        if len(self.profiles) == 1:
            return self.profiles[0].digest()
        h = hashlib.sha256("".join(p.digest() for p in self.profiles).encode())
        return "sha256:" + h.hexdigest()[:32]

    def merge(self, other: "ProfileSet") -> "ProfileSet":
        """Setting by setting (Profile.merge: disjoint seeds, same options); both must hold the same settings."""
        if self.settings != other.settings:
            raise ProfileError("cannot merge profiles of different settings: "
                               f"{'; '.join(map(describe, self.settings))} vs {'; '.join(map(describe, other.settings))}")
        return ProfileSet(tuple(a.merge(b) for a, b in zip(self.profiles, other.profiles)))

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        if len(self.profiles) == 1:
            return self.profiles[0].save(path)
        arrays: dict[str, Any] = {SET_KEY: np.array(json.dumps({"schedc_profile_set": SET_VERSION,
                                                                 "settings": [list(s) for s in self.settings]}))}
        for i, profile in enumerate(self.profiles):
            arrays.update({f"s{i}/{name}": a for name, a in profile.arrays_for_file().items()})
        return atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> "ProfileSet":
        """A multi-setting file, or a single profile's file as a set of one; one ProfileError line otherwise."""
        path = Path(path)
        if not path.exists():
            raise ProfileError(f"profile not found: {path} (run `schedc profile` first)")
        with open_profile_file(path) as data:
            if SET_KEY not in data.files:
                return cls((Profile.read(data, f"profile {path}"),))
            head = parse_meta(str(data[SET_KEY]), f"profile {path}")
            settings = head.get("settings")
            if head.get("schedc_profile_set") != SET_VERSION or not isinstance(settings, list) \
                    or not 1 <= len(settings) <= MAX_SETTINGS:
                raise ProfileError(f"profile {path} has an unreadable settings list (version "
                                   f"{head.get('schedc_profile_set')!r}): re-profile with `schedc profile`")
            held = {name.split("/", 1)[0] for name in data.files if "/" in name}
            if held != {f"s{i}" for i in range(len(settings))}:
                raise ProfileError(f"profile {path}: its settings list does not match the profiles it holds")
            profiles = tuple(Profile.read(Prefixed(data, f"s{i}/"), f"profile {path} (setting {i})")
                             for i in range(len(settings)))
        out = cls(profiles)
        if [list(s) for s in out.settings] != settings:
            raise ProfileError(f"profile {path}: its settings list does not match the profiles it holds")
        return out


def choose(profiles: ProfileSet, guidance_scale: float | None, steps: "int | str") -> tuple[Profile, tuple[Profile, ...]]:
    """What `schedc solve` compiles for: (the profile whose sampling the schedule records, the other settings
    it is also scored at). One step count per schedule; `guidance_scale` picks one setting; `steps` is
    "auto" or a count (one the file measured, when it holds several settings)."""
    if len(profiles.profiles) == 1 and guidance_scale is None:
        return profiles.profiles[0], ()
    counts = profiles.step_counts
    if isinstance(steps, int) and len(profiles.profiles) > 1 and steps not in counts:
        raise ProfileError(f"the profile measured {', '.join(map(str, counts))} steps; a multi-setting profile is not "
                           f"retargeted: pass one of them, or profile at {steps} steps")
    at = steps if isinstance(steps, int) and steps in counts else None
    chosen = profiles.select(guidance_scale, at)
    if len({n for _, n in map(setting_of, chosen)}) > 1:
        raise ProfileError(f"the profile has settings at {' and '.join(map(str, counts))} steps and a schedule runs at "
                           f"one step count: pass --steps {counts[0]} (one schedule per step count)")
    primary = chosen[len(chosen) // 2]  # the middle guidance scale: what the schedule runs at by default
    return primary, tuple(p for p in chosen if p is not primary)


def merge_files(paths: Iterable[str | Path]) -> ProfileSet:
    merged = None
    for path in paths:
        part = ProfileSet.load(path)
        merged = part if merged is None else merged.merge(part)
    if merged is None:
        raise ProfileError("nothing to merge")
    return merged


__all__ = ["ProfileSet", "choose", "describe", "merge_files", "setting_of"]
