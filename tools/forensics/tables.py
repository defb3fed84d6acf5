"""The report's tables, each named after the paper's table it mirrors (Table III Facial-FE, Table IV
MRP, Table X L2FE-Hash, Table XII accuracy) or marked as ours, and the protocol differences. The
text report and the HTML page both render these same `Table`s.

The threat-model table takes its rows from `Report.threat_models`: one per scheme and threat model
(flash only for every scheme; hardened mode adds a device in hand and microcontroller secrets
extracted). "Ours: hardened" lists every hardened row with each attack's own account as a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latticelock.kernels.recipe import SEALED_SCHEME_ID


@dataclass(frozen=True)
class Table:
    name: str  # "Table III", or "Ours: ..." for tables the paper does not have
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    @property
    def paper(self) -> bool:
        return self.name.startswith("Table")


def pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"


ATTACK_COLUMNS = ["attack", "parameter set", "mode", "ASR enrolled", "ASR other image", "unlock", "victims"]


def _attack_rows(report, schemes: set[str], attacks: tuple[str, ...]) -> list[list[str]]:
    """One line per (attack, parameter set, mode): embedding-space rows by test set, image-space rows whole."""
    lines: dict[tuple, dict] = {}
    for r in report.rows:
        if r["scheme"] in schemes and r["attack"] in attacks:
            line = lines.setdefault((r["attack"], r["parameter_set"], r.get("mode", "-")), {"victims": r["victims"]})
            line[r["test_set"]] = "n/a" if r.get("not_applicable") else pct(r["asr"])
    for r in report.image_rows:
        if r["scheme"] in schemes and r["attack"] in attacks:
            lines[(f"{r['attack']} ({r['generator']})", r["parameter_set"], r["mode"])] = {
                "enrolled": pct(r["asr"]), "other-image": pct(r["asr_other_image"]), "victims": r["victims"]}
    return [[a, p, m, v.get("enrolled", "-"), v.get("other-image", "-"), v.get("unlock", "-"), str(v["victims"])]
            for (a, p, m), v in lines.items()]


def _hardened_table(report) -> Table | None:
    """Every hardened row, by threat model and attack; each attack's own account (`why`) as a note."""
    lines: dict[tuple, dict] = {}
    notes: dict[str, None] = {}
    for r in report.rows:
        if r["scheme"] == SEALED_SCHEME_ID:
            line = lines.setdefault((r.get("threat_model", "flash only"), r["attack"], r["parameter_set"]), {"victims": r["victims"]})
            line[r["test_set"]] = "n/a" if r.get("not_applicable") else pct(r["asr"])
            if r.get("why"):
                notes[f"{r['attack']}: {r['why']}"] = None
    for r in report.image_rows:
        if r["scheme"] == SEALED_SCHEME_ID:
            lines[(r.get("threat_model", "flash only"), f"{r['attack']} ({r['generator']})", r["parameter_set"])] = {
                "enrolled": pct(r["asr"]), "other-image": pct(r["asr_other_image"]), "victims": r["victims"]}
    if not lines:
        return None
    return Table("Ours: hardened", "Hardened mode v2 (matched on the microcontroller), per threat model of PROTOCOL.md section 7",
                 ["threat model", "attack", "parameter set", "ASR enrolled", "ASR other image", "unlock", "victims"],
                 [[t, a, p, v.get("enrolled", "-"), v.get("other-image", "-"), v.get("unlock", "-"), str(v["victims"])]
                  for (t, a, p), v in lines.items()],
                 [*notes, _baseline_line(report)])


def _baseline_line(report) -> str:
    b = report.baseline
    return "; ".join(
        f"random guess ({ts}): {100 * b[ts]['per_guess_mean']:.2f}% +- {100 * b[ts]['per_guess_std']:.2f}% per guess, "
        f"{100 * b[ts]['any_mean']:.1f}% +- {100 * b[ts]['any_std']:.1f}% for any of {b[ts]['guesses']}"
        for ts in ("enrolled", "other-image"))


def protocol_differences(report) -> list[str]:
    t, g = report.threshold, report.generator
    return [
        f"Data: {report.data.get('embeddings', 'embeddings')} ({report.data['faces']} faces); attacker and victims "
        f"disjoint by identity ({report.data['public_identities']} public identities, {report.data['victims']} victims "
        f"from {report.data['victims_from']}).",
        f"Model: FaceNet 20180408-102900 (VGGFace2), {report.data.get('embedding', 'margin crop with flip averaging')}.",
        f"Threshold: tau = {t['tau']:.4f}, the {100 * t['target_fpr']:.1f}% quantile of public impostor distances "
        f"(the paper: {t['paper_tau']}).",
        "ASR: one reconstruction per victim; a success when it lies within tau of the enrolled image's embedding "
        "(\"enrolled\") or of another image of the victim (\"other image\"); \"unlock\" when the scheme's own "
        "verification releases the key.",
        "Random guess: each repeat draws one image of each of "
        f"{report.baseline['enrolled']['guesses']} distinct public identities ({report.baseline['enrolled']['repeats']} repeats).",
        ("Generator: " + g["description"] + ". The paper's generator is a GAN-class model; ours is the CPU model "
         "this machine could train, so image-space ASR here is a lower bound on a thief's.") if g else
        "Generator: none (image-space rows not run).",
        "L2FE-Hash records are made with the evaluation Argon2id cost (decisions do not depend on it); the device cost "
        "is timed separately.",
    ]


def tables(report) -> list[Table]:
    out = []
    paper = (
        ("Table III", "Facial-FE: PIPE and the algebraic recovery", {"facial-fe"}),
        ("Table IV", "MRP: PIPE with full leakage (R stolen) and partial leakage (v only)", {"mrp"}),
        ("Table X", "L2FE-Hash: PIPE", {"l2fe-hash"}),
    )
    for name, title, schemes in paper:
        rows = _attack_rows(report, schemes, ("pipe", "pipe-image", "algebraic"))
        if rows:
            out.append(Table(name, title, ATTACK_COLUMNS, rows, [_baseline_line(report)]))
    if report.accuracy:
        out.append(Table("Table XII", "Accuracy of each scheme on the attack victims", ["scheme", "parameter set", "TPR", "FPR", "pairs"],
                         [[a["scheme"], a["parameter_set"], pct(a["tpr"]), pct(a["fpr"]), f"{a['genuine_pairs']} / {a['impostor_pairs']}"]
                          for a in report.accuracy],
                         ["TPR: the victim's other image against the record; FPR: another victim's other image."]))
    rows = _attack_rows(report, {"unprotected"}, ("pipe", "pipe-image", "algebraic"))
    if rows:
        out.append(Table("Ours: unprotected", "The unprotected embedding (the baseline every scheme is measured against)",
                         ATTACK_COLUMNS, rows))
    b = report.baseline
    out.append(Table("Ours: baselines", "Random guessing (the paper's protocol) and the public mean face",
                     ["guess", "test set", "ASR", "std", "victims"],
                     [[r["attack"], r["test_set"], pct(r["asr"]), pct(r.get("asr_std")), str(r["victims"])]
                      for r in report.rows if r["scheme"] == "any"], [b["protocol"]]))
    rows = [[r["parameter_set"], r["attack"], pct(r["asr"]), str(r["guesses"]), str(r.get("guesses_per_s", "-")), str(r["victims"])]
            for r in report.rows if r["attack"].startswith("dictionary") and r["scheme"] != SEALED_SCHEME_ID]
    if rows:
        out.append(Table("Ours: dictionary", "Public faces and their k-means centroids through each scheme's own verification",
                         ["parameter set", "attack", "unlock ASR", "guesses", "guesses/s", "victims"], rows))
    rows = _attack_rows(report, {"l2fe-hash"}, ("lattice", "lattice-image"))
    if rows:
        notes = [f"{r['parameter_set']}: {r['kdf_evaluations']} Argon2id evaluations for {r['victims']} victims, exact e for "
                 f"{pct(r['exact_e_recovered'])}; at the device's cost ({r['device_kdf_s']} s each) {r['device_kdf_total_s']} s"
                 for r in report.rows if r["scheme"] == "l2fe-hash" and r["attack"] == "lattice" and r["test_set"] == "unlock"]
        out.append(Table("Ours: lattice", "Lattice attack on plain L2FE-Hash (no face of the victim needed)", ATTACK_COLUMNS, rows, notes))
    hardened = _hardened_table(report)
    if hardened is not None:
        out.append(hardened)
    if report.threat_models:
        out.append(Table("Ours: threat models", "What each threat model yields, per scheme family",
                         ["scheme family", "threat model", "face", "by", "key", "by", "why"],
                         [[t["family"], t["threat_model"], pct(t["face_asr"]), t["face_by"] or "-", pct(t["key_asr"]),
                           t["key_by"] or "-", t["why"]] for t in report.threat_models]))
    out.append(Table("Ours: cost", "Cost per guess", ["parameter set", "attack", "guesses/s", "s/guess", "verifications", "note"],
                     [[c["parameter_set"], c["attack"], "-" if c.get("guesses_per_s") is None else f"{c['guesses_per_s']:.1f}",
                       "-" if c.get("s_per_guess") is None else f"{c['s_per_guess']:.2e}", str(c["verifications"]),
                       c.get("note") or (f"victim {c['victim']}: recovered={c['recovered']} in {c['seconds']:.1f} s, {c['kdf']}"
                                         if "victim" in c else "")] for c in report.costs]))
    if report.fleet:
        from latticelock.tools.forensics.fleet import summary_table

        out.append(summary_table(report.fleet))
    return out


def render_text(table: Table) -> str:
    widths = [max(len(str(c)) for c in [h, *(row[i] for row in table.rows)]) for i, h in enumerate(table.columns)]
    head = f"{table.name}: {table.title}" + ("" if table.paper else "  [not in the paper]")
    lines = [head, "  ".join(h.ljust(w) for h, w in zip(table.columns, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in table.rows]
    lines += [f"  {n}" for n in table.notes]
    return "\n".join(lines)


def format_report(report) -> str:
    t = report.threshold
    lines = [f"data: {report.data}",
             f"tau = {t['tau']:.4f} (paper: {t['paper_tau']}): {t['how']}; public FPR {t['fpr']:.4f}, "
             f"public TPR {t['tpr']:.4f} on {t['genuine_pairs']} genuine pairs", ""]
    for table in tables(report):
        lines += [render_text(table), ""]
    lines += ["Protocol differences from the paper:"] + [f"- {d}" for d in protocol_differences(report)]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(f"runtime {report.runtime_s:.0f} s")
    return "\n".join(lines)
