"""The README's ranking tables: a metric at NFE 5, 10, 20, 50, 100 per ksampler solver, from
`difflab compare --at NFE --json` over the runs of examples/ranking.yaml (best in bold).

    python examples/ranking_table.py gaussian exact_w2
"""
import json, subprocess, sys, glob
import h5py
target, metric = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(f"runs/ksampler-{target}-*.h5"))
at = [5, 10, 20, 50, 100]
rows = {}
for a in at:
    out = subprocess.run(["difflab", "compare", *files, "-m", metric, "--at", str(a), "--json"], capture_output=True, text=True).stdout
    for s in json.loads(out)["series"]:
        name = s["series"]["solver"]
        rows.setdefault(name, {})[a] = s["error_at"]
best = {a: min(v[a] for v in rows.values() if v.get(a) is not None) for a in at}
order = ["euler", "euler-ancestral", "heun", "dpmpp-2m", "dpmpp-3m", "dpmpp-2m-sde", "dpmpp-3m-sde", "dpmpp-2s", "unipc", "deis", "lms"]
print(f"| {target}: `{metric}` at NFE | " + " | ".join(str(a) for a in at) + " |")
print("|---|" + "---:|" * len(at))
for n in order:
    cells = []
    for a in at:
        v = rows[n].get(a)
        c = "—" if v is None else f"{v:.3g}"
        if v is not None and v == best[a]:
            c = f"**{c}**"
        cells.append(c)
    print(f"| {n} | " + " | ".join(cells) + " |")
