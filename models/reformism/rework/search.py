import sys, warnings, json, time, inspect
warnings.simplefilter("ignore")
sys.path.insert(0, "/tmp/wt")
import numpy as np, pandas as pd
from scipy.stats import qmc
from pysd_runner import compile_model, run_ensemble, load_scenario
import tests.models.test_reformism_claims as T
from calibration.facts import load_facts_spec, measure
model = compile_model(sys.argv[1])
N = int(sys.argv[2]); seed = int(sys.argv[3])
space = json.loads(open(sys.argv[4]).read())
spec = load_facts_spec("/tmp/rf/facts.toml")
names = list(space)
lo = np.array([space[k][0] for k in names]); hi = np.array([space[k][1] for k in names])
X = qmc.scale(qmc.LatinHypercube(d=len(names), seed=seed).random(N), lo, hi)
VARS = sorted(set(T.VARIABLES) | {"output","unemployment_rate","gross_profit_rate","gross_investment_share","wage_rate","debt_ratio","public_debt_ratio"})
claims = [(n, f) for n, f in vars(T).items() if n.startswith("test_") and "runs" in inspect.signature(f).parameters and "model" not in inspect.signature(f).parameters]
scen_label = {"baseline":"baseline","reform_victory":"reform_victory","austerity":"recession_austerity","hold":"recession_hold_the_line","militant":"militant_minority","gradualist":"gradualist_world"}
labels = [l for l,_,_ in T.MEMBERS]
settings = load_scenario("baseline", model).time
def derived(c):
    c = dict(c)
    if "investment function slope" in c and "investment function scale" not in c:
        c["investment function scale"] = 0.1325 * np.exp(-c["investment function slope"] * 0.149)
    return c
results = []
chunk = 20
for start in range(0, N, chunk):
    rows = []
    cands = [derived(dict(zip(names, x))) for x in X[start:start+chunk]]
    for c in cands:
        for _, scen, o in T.MEMBERS:
            d = dict(load_scenario(scen, model).params); d.update(c); d.update(o)
            rows.append({model.resolve(k, kinds=("constant",)).py_name: v for k, v in d.items()})
    frame = pd.DataFrame(rows)
    for col in frame.columns: frame[col] = frame[col].fillna(model.elements[col].default)
    ens = run_ensemble(model, frame, variables=VARS, check_ranges=False, **settings)
    for j, c in enumerate(cands):
        runs = ens.isel(run=slice(j*len(labels), (j+1)*len(labels))).assign_coords(run=labels)
        if not bool(runs["ok"].all()):
            results.append((99, 99, c, ["nonfinite"], [])); continue
        failed = []
        for n, f in claims:
            try: f(runs)
            except AssertionError: failed.append(n)
            except Exception as e: failed.append(n+"!"+type(e).__name__)
        ff = []
        for l, s in scen_label.items():
            for r in measure(runs.sel(run=l), spec, s):
                if r.passed is False: ff.append(f"{l}:{r.fact.name}")
        results.append((len(failed), len(ff), c, failed, ff))
        with open(sys.argv[5] + "l", "a") as fh:
            fh.write(json.dumps(dict(claims_failed=len(failed), facts_failed=len(ff), params=c, claims=failed, facts=ff), default=float) + "\n")
    print(f"{start+chunk}/{N} done", file=sys.stderr, flush=True)
results.sort(key=lambda r: (r[0] * 3 + r[1]))
with open(sys.argv[5], "w") as fh:
    json.dump([dict(claims_failed=r[0], facts_failed=r[1], params=r[2], claims=r[3], facts=r[4]) for r in results], fh, indent=1, default=float)
for r in results[:8]:
    print(r[0], r[1], {k: round(v, 3) for k, v in r[2].items()}, r[3], r[4])
