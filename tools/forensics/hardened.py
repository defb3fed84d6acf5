"""The report's hardened-mode rows (scheme l2fe-hash-mcu), one `threat_model` each (PROTOCOL.md section 7).

Each victim gets a device of its own (`chip.build_device`: a fresh simulated chip, device lattice and
owner's passcode; enrolled through `device.hardened.enrol`), whose host flash is stolen and parsed back.
Then, measured on every device:

- flash only: the lattice attack, the dictionary and PIPE refuse the sealed record (their words are in
  each row's `why`). The thief's best picture is then independent of the victim, so the PIPE rows score
  one random public face per victim, in embedding space and drawn by the generator (image space).
- device in hand: thieves through the live chip, its limits on (`chip.device_in_hand`): "public faces"
  (the report's dictionary of random public faces) and "centre first" (the zero probe vector, i.e. the
  projection's centre, then the public mean face and the k-means centroids). Key: the chip signed with
  the victim's key. Face: the guess it signed for lies within tau of the victim's embedding.
- microcontroller secrets extracted: the lattice attack on the opened c over the device lattice,
  candidates checked against the sealed HMAC tag (`chip.secrets_extracted`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from latticelock.kernels.recipe import SEALED_SCHEME_ID as SCHEME
from latticelock.tools.forensics.chip import DEVICE_IN_HAND, FLASH_ONLY, SECRETS_EXTRACTED
from latticelock.tools.forensics import protocol as P
from latticelock.tools.forensics.report import attack_row

MODE = "hardened"
NOT_APPLICABLE = {"lattice": "no c on the flash, only ciphertext", "dictionary": "no verifier to test a guess offline"}


def hardened_rows(report, images, split: P.Split, idx: np.ndarray, dictionary: np.ndarray, mean_face: np.ndarray,
                  centroids: np.ndarray, tau: float, cfg, workdir: Path, projection=None, progress: bool = True) -> None:
    """Append the hardened rows for victims `idx` (the report's attack victims, in order) to `report`."""
    from tqdm import tqdm

    from latticelock.kernels.hazmat.rep import L2FERep
    from latticelock.tools.forensics.chip import build_device, steal_device

    pset = cfg.hardened_set
    rep = L2FERep(pset, projection=projection)
    stolen, devices = [], []
    bar = tqdm(total=len(idx), desc=f"hardened devices {pset}", disable=not progress, mininterval=2.0)
    for j, i in enumerate(idx):
        device = build_device(workdir / f"hardened-{j:04d}", {str(split.victim_labels[i]): split.enrolled[i]}, pset,
                              projection)
        devices.append(device)
        stolen.append(steal_device(device)[0])
        bar.update(1)
    bar.close()
    _flash_only(report, images, split, idx, stolen, pset, tau, cfg, projection)
    _device_in_hand(report, split, idx, devices, stolen, rep, dictionary, mean_face, centroids, tau)
    _secrets_extracted(report, split, idx, devices, stolen, rep, mean_face, centroids, tau, cfg)
    report.notes.append(f"hardened rows: the first {len(idx)} attack victims, each on a simulated device of its own "
                        f"({pset}); the chip's clock is injected, so back-off waits are counted, not slept")


def _flash_only(report, images, split, idx, stolen, pset, tau, cfg, projection) -> None:
    from latticelock.tools.forensics.chip import offline_refusals

    refusals = [offline_refusals(s.record, projection) for s in stolen]
    fields = sorted(stolen[0].record.fields)
    for attack, what in NOT_APPLICABLE.items():
        said = "; ".join(sorted({r[attack] for r in refusals}))
        report.rows.append({"scheme": SCHEME, "parameter_set": pset, "attack": attack, "test_set": "unlock", "asr": None,
                            "victims": len(stolen), "guesses": 0, "not_applicable": True, "threat_model": FLASH_ONLY,
                            "why": f"{what}: the record holds {fields} (the {attack} attack: {said})"})
    rng = np.random.default_rng(cfg.seed + 2)
    guess = split.public[rng.choice(len(split.public), len(idx), replace=len(idx) > len(split.public))]
    how = ("PIPE has no surrogate for a sealed record (" + "; ".join(sorted({r["pipe"] for r in refusals})) +
           "): the thief's best picture is independent of the victim, a random public face")
    why = "the sealed blob says nothing about the face: PIPE's best guess is a random public face (random-guess level)"
    for test_set, targets in (("enrolled", split.enrolled[idx]), ("other-image", split.other[idx])):
        report.rows.append(attack_row(SCHEME, pset, "pipe", test_set, P.success(guess, targets, tau), 1, mode=MODE,
                                      threat_model=FLASH_ONLY, how=how, why=why))
    images.add(SCHEME, pset, MODE, guess[: len(images.idx)], how, why=why)  # the image victims are the first of idx


def _device_in_hand(report, split, idx, devices, stolen, rep, dictionary, mean_face, centroids, tau) -> None:
    from latticelock.kernels.hazmat.rep import preprocess
    from latticelock.tools.forensics.chip import centre_first, device_in_hand_runs

    strategies = {  # name -> (probe vectors, the embedding each stands for)
        "public faces": (preprocess(rep.params, rep.projection, dictionary), dictionary),
        "centre first": centre_first(rep, np.concatenate([mean_face[None, :], centroids])),
    }
    runs = [device_in_hand_runs(d, [s], {name: vectors for name, (vectors, _) in strategies.items()})
            for d, s in zip(devices, stolen)]
    for name, (_, embeddings) in strategies.items():
        mine = [r[name] for r in runs]
        fell = [s.user in r.accepted for r, s in zip(mine, stolen)]
        signed = np.array([embeddings[r.accepted[s.user]] if s.user in r.accepted else np.full(len(mean_face), np.nan)
                           for r, s in zip(mine, stolen)])
        attempts = np.array([r.attempts for r in mine])
        waited = np.array([r.waited_s for r in mine])
        stopped, cold = Counter(r.stopped_by for r in mine), Counter(r.cold for r in mine)
        answers = sum((Counter(r.answers) for r in mine), Counter())
        extra = {"mode": MODE, "threat_model": DEVICE_IN_HAND, "k": max(r.k for r in mine),
                 "attempts_mean": float(attempts.mean()), "attempts_max": int(attempts.max()),
                 "waited_s_mean": float(waited.mean()), "stopped_by": dict(stopped), "cold_device": dict(cold),
                 "chip_answers": dict(answers),
                 "accepting_guess": dict(Counter(str(r.accepted[s.user]) for r, s in zip(mine, stolen) if s.user in r.accepted)),
                 "why": (f"{name}: {attempts.mean():.1f} counted attempts per device of k = {max(r.k for r in mine)} "
                         f"identical probes, {waited.mean():.0f} s of back-off waited out (injected clock), then "
                         f"{', '.join(f'{k} ({v})' for k, v in stopped.items())}; a restarted device answered "
                         f"{', '.join(cold)} to the first face session")}
        report.rows.append(attack_row(SCHEME, rep.parameter_set, f"chip dictionary ({name})", "unlock", fell,
                                      len(embeddings), **extra))
        for test_set, targets in (("enrolled", split.enrolled[idx]), ("other-image", split.other[idx])):
            # NaN (nothing signed) is never within tau
            hits = np.linalg.norm(signed - targets, axis=1) <= tau
            report.rows.append(attack_row(SCHEME, rep.parameter_set, f"chip dictionary ({name})", test_set, hits,
                                          len(embeddings), **extra))


def _secrets_extracted(report, split, idx, devices, stolen, rep, mean_face, centroids, tau, cfg) -> None:
    import time

    from latticelock.kernels.hazmat.rep import preprocess
    from latticelock.tools.forensics.chip import secrets_extracted
    from latticelock.tools.forensics.lattice_attack import embedding_of

    p, proj = rep.params, rep.projection
    centres_e = preprocess(p, proj, np.concatenate([mean_face[None, :], centroids]))
    start = time.perf_counter()
    found = [secrets_extracted(d, [s], centres_e, cfg.lattice_radius * p.radius, cfg.lattice_budget, cfg.lattice_bkz)[0]
             for d, s in zip(devices, stolen)]
    seconds = time.perf_counter() - start
    truth = preprocess(p, proj, split.enrolled[idx])
    exact = [x.e is not None and np.array_equal(np.mod(x.e, p.q), np.mod(t, p.q)) for x, t in zip(found, truth)]
    recovered = np.stack([embedding_of(x.e if x.e is not None else centres_e[0], p, proj) for x in found])
    checks = sum(x.evaluations for x in found)
    why = (f"pepper and lattice seed read from the chip's flash: every blob opens, and the lattice attack finds e "
           f"exactly for {100 * np.mean(exact):.1f}% with {checks} HMAC tag checks in {seconds:.1f} s: plain L2FE-Hash "
           "(the tag is an HMAC, no Argon2id)")
    extra = {"mode": MODE, "threat_model": SECRETS_EXTRACTED, "exact_e_recovered": float(np.mean(exact)),
             "tag_checks": checks, "wall_s": round(seconds, 2), "why": why}
    report.rows.append(attack_row(SCHEME, rep.parameter_set, "lattice (chip secrets)", "unlock", [x.key for x in found],
                                  cfg.lattice_budget, **extra))
    for test_set, targets in (("enrolled", split.enrolled[idx]), ("other-image", split.other[idx])):
        report.rows.append(attack_row(SCHEME, rep.parameter_set, "lattice (chip secrets)", test_set,
                                      P.success(recovered, targets, tau), cfg.lattice_budget, **extra))
