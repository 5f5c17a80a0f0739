r"""Synthetic Census-Income (KDD) files in exactly the raw format.

For tests and demos without the real data: 42 fields per line joined by
``", "`` (as in the UCI files), no header, integers where the real columns
hold integers, ``instance_weight`` with two decimals, value sets taken from
the real files, and ``income_50k`` as `` - 50000.`` / `` 50000+.``. Two text
values keep the trailing space they have in the real files, so readers must
strip fields.

The labels follow a known generative model, so a model has something to learn:

* ``marital_stat``: children (age < 16) are ``Never married``; for adults
  P(never married) = sigmoid(3.3 - 0.2 (age - 18)); other adults are mostly
  ``Married-civilian spouse present``. The household role
  (``det_hh_fam_stat`` / ``det_hh_summ``) and ``tax_filer_stat`` are then
  drawn conditionally on marital status and age, so ``marital`` is strongly
  predictable from age, household role and tax filing status.
* ``income_50k``: children never earn over 50k; for adults
  logit = -12 + 0.55 edu_rank + 2.5 weeks_worked / 52 + 0.04 min(age, 55)
  + 0.6 [male] + 2.5 [capital_gains > 0] + 0.8 [self-employed / federal],
  giving roughly 6 % positives as in the real files.

Everything is drawn from ``numpy.random.default_rng(seed)``, and gzip files
carry no time stamp or name, so the same seed gives identical bytes.

    python -m src.synth.census --output_dir data/census/synth \
        --train_rows 20000 --test_rows 10000 --seed 1
"""
import gzip as gzip_module
import io
import os
import sys

import numpy as np

from src.data.census import COLUMNS

TRAIN_FILE = "census-income.data.gz"
TEST_FILE = "census-income.test.gz"
# the real test file lacks a det_hh_fam_stat category present in train
DROPPED_TEST_CATEGORY = ("det_hh_fam_stat", "Grandchild 18+ never marr not in subfamily")

EDUCATION = {  # value: (rank, weight among adults)
    "Less than 1st grade": (0, 1), "1st 2nd 3rd or 4th grade": (1, 1),
    "5th or 6th grade": (2, 2), "7th and 8th grade": (3, 4), "9th grade": (4, 3),
    "10th grade": (5, 4), "11th grade": (6, 4), "12th grade no diploma": (7, 1.5),
    "High school graduate": (8, 32), "Some college but no degree": (9, 19),
    "Associates degree-occup /vocational": (10, 3.5), "Associates degree-academic program": (10, 3),
    "Bachelors degree(BA AB BS)": (12, 13), "Masters degree(MA MS MEng MEd MSW MBA)": (13, 4.5),
    "Prof school degree (MD DDS DVM LLB JD)": (14, 1.3), "Doctorate degree(PhD EdD)": (14, 0.9),
}
CLASS_WORKER = {"Private": 72, "Self-employed-not incorporated": 8, "Local government": 8,
                "State government": 4, "Federal government": 3,
                "Self-employed-incorporated": 3, "Without pay": 0.5}
MAJOR_IND = [
    "Agriculture", "Business and repair services", "Communications", "Construction",
    "Education", "Entertainment", "Finance insurance and real estate", "Forestry and fisheries",
    "Hospital services", "Manufacturing-durable goods", "Manufacturing-nondurable goods",
    "Medical except hospital", "Mining", "Other professional services",
    "Personal services except private HH", "Private household services",
    "Public administration", "Retail trade", "Social services", "Transportation",
    "Utilities and sanitary services", "Wholesale trade"]
MAJOR_OCC = [
    "Adm support including clerical", "Armed Forces", "Executive admin and managerial",
    "Farming forestry and fishing", "Handlers equip cleaners etc",
    "Machine operators assmblrs & inspctrs ", "Other service",
    "Precision production craft & repair", "Private household services",
    "Professional specialty", "Protective services", "Sales",
    "Technicians and related support", "Transportation and material moving"]
RACE = {"White": 84, "Black": 10, "Asian or Pacific Islander": 3,
        "Amer Indian Aleut or Eskimo": 1, "Other": 2}
HISP = {"All other": 86, "Mexican-American": 4, "Mexican (Mexicano)": 3.5, "Puerto Rican": 1.5,
        "Central or South American": 2, "Other Spanish": 1, "Chicano": 0.5,
        "Cuban": 0.5, "NA": 0.5, "Do not know": 0.2}
COUNTRY = {"United-States": 88, "Mexico": 4, "Puerto-Rico": 0.8, "Germany": 0.5,
           "Philippines": 0.6, "Canada": 0.4, "El-Salvador": 0.4, "India": 0.3, "Poland": 0.3,
           "China": 0.3, "Cuba": 0.3, "South Korea": 0.3, "Italy": 0.4, "Vietnam": 0.3,
           "England": 0.3, "Ireland": 0.2, "Peru": 0.1, "Taiwan": 0.1, "Columbia": 0.1,
           "Holand-Netherlands": 0.05, "?": 3}
CITIZEN_FOREIGN = ["Foreign born- Not a citizen of U S ",
                   "Foreign born- U S citizen by naturalization"]
STATES = ["California", "Florida", "New York", "Texas", "Utah", "Michigan", "North Carolina",
          "Kentucky", "Oklahoma", "Abroad", "?", "Tennessee", "Montana", "Delaware",
          "Mississippi", "Connecticut", "District of Columbia"]
REGIONS = ["South", "West", "Midwest", "Northeast", "Abroad"]
MARRIED_OTHER = {"Divorced": 10, "Widowed": 8, "Separated": 2.5,
                 "Married-spouse absent": 1, "Married-A F spouse present": 0.4}
UNEMP = {"Other job loser": 3, "Re-entrant": 3, "Job loser - on layoff": 1.5,
         "New entrant": 1, "Job leaver": 1}


def _choice(rng, table, n):
    values = list(table)
    p = np.array([table[v] for v in values], dtype=float)
    return np.array(values, dtype=object)[rng.choice(len(values), size=n, p=p / p.sum())]


def _pick(rng, n, *options):
    """Per row, choose among value arrays/scalars with the given probabilities:
    ``_pick(rng, n, (p1, v1), (p2, v2), ...)``, each ``p`` scalar or per-row."""
    probs = np.stack([np.broadcast_to(np.asarray(p, dtype=float), (n,)) for p, _ in options], 1)
    cum = np.cumsum(probs / probs.sum(1, keepdims=True), axis=1)
    which = (rng.random(n)[:, None] > cum).sum(1).clip(max=len(options) - 1)
    out = np.empty(n, dtype=object)
    for k, (_, value) in enumerate(options):
        sel = which == k
        out[sel] = value[sel] if isinstance(value, np.ndarray) else value
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def sample_rows(n, rng):
    """Draw ``n`` synthetic rows; returns ``{column: array}`` of raw values."""
    c = {}
    age = np.where(rng.random(n) < 0.28, rng.integers(0, 16, n),
                   np.clip(rng.gamma(4.0, 11.0, n) + 12, 16, 90)).astype(np.int64)
    child = age < 16
    adult = ~child
    c["age"] = age
    edu = _choice(rng, {k: v[1] for k, v in EDUCATION.items()}, n)
    edu[child] = "Children"
    young = adult & (age < 19)
    edu[young & (rng.random(n) < 0.7)] = "11th grade"
    c["education"] = edu
    rank = np.array([EDUCATION.get(e, (0, 0))[0] for e in edu], dtype=float)
    c["hs_college"] = np.where(young, "High school",
                               np.where(adult & (age < 25) & (rng.random(n) < 0.3),
                                        "College or university", "Not in universe"))

    p_work = np.where(child, 0.0, np.where(age < 65, 0.78, 0.15)) * (0.7 + rank / 40)
    works = rng.random(n) < p_work
    c["weeks_worked"] = np.where(works, np.where(rng.random(n) < 0.75, 52,
                                                 rng.integers(1, 52, n)), 0)
    cw = _choice(rng, CLASS_WORKER, n)
    cw[~works] = np.where(rng.random((~works).sum()) < 0.03, "Never worked", "Not in universe")
    c["class_worker"] = cw
    ind = rng.integers(1, 52, n)
    occ = rng.integers(1, 47, n)
    c["det_ind_code"] = np.where(works, ind, 0)
    c["det_occ_code"] = np.where(works, occ, 0)
    c["major_ind_code"] = np.where(works, np.array(MAJOR_IND, dtype=object)[ind % len(MAJOR_IND)],
                                   "Not in universe or children")
    c["major_occ_code"] = np.where(works, np.array(MAJOR_OCC, dtype=object)[occ % len(MAJOR_OCC)],
                                   "Not in universe")
    c["wage_per_hour"] = np.where(works & (rng.random(n) < 0.12),
                                  rng.integers(400, 3000, n), 0)
    c["full_or_part_emp"] = np.where(
        child, "Children or Armed Forces",
        np.where(works, _pick(rng, n, (0.8, "Full-time schedules"),
                              (0.1, "PT for non-econ reasons usually FT"),
                              (0.05, "PT for econ reasons usually PT"),
                              (0.05, "Children or Armed Forces")),
                 _pick(rng, n, (0.85, "Not in labor force"), (0.1, "Unemployed full-time"),
                       (0.05, "Unemployed part- time"))))
    unemployed = np.char.startswith(c["full_or_part_emp"].astype(str), "Unemployed")
    c["unemp_reason"] = np.where(unemployed, _choice(rng, UNEMP, n), "Not in universe")
    c["union_member"] = np.where(works & (rng.random(n) < 0.2),
                                 np.where(rng.random(n) < 0.3, "Yes", "No"), "Not in universe")
    c["num_emp"] = np.where(works, rng.integers(1, 7, n), 0)
    selfemp = np.char.startswith(cw.astype(str), "Self-employed")
    c["own_or_self"] = np.where(selfemp, np.where(rng.random(n) < 0.5, 1, 2),
                                np.where(works & (rng.random(n) < 0.1), 2, 0))

    c["race"] = _choice(rng, RACE, n)
    c["hisp_origin"] = _choice(rng, HISP, n)
    male = rng.random(n) < 0.48
    c["sex"] = np.where(male, "Male", "Female")
    c["country_self"] = _choice(rng, COUNTRY, n)
    c["country_father"] = np.where(rng.random(n) < 0.8, c["country_self"], _choice(rng, COUNTRY, n))
    c["country_mother"] = np.where(rng.random(n) < 0.8, c["country_father"], _choice(rng, COUNTRY, n))
    native = np.isin(c["country_self"], ["United-States", "?"])
    c["citizenship"] = np.where(
        native, _pick(rng, n, (0.97, "Native- Born in the United States"),
                      (0.02, "Native- Born abroad of American Parent(s)"),
                      (0.01, "Native- Born in Puerto Rico or U S Outlying")),
        np.array(CITIZEN_FOREIGN, dtype=object)[rng.integers(0, 2, n)])

    # marital status, then household role and tax filing given marital status
    p_never = np.where(child, 1.0, _sigmoid(3.3 - 0.2 * (age - 18)))
    never = rng.random(n) < p_never
    married = _pick(rng, n, (0.8, "Married-civilian spouse present"),
                    (0.2, _choice(rng, MARRIED_OTHER, n)))
    marital = np.where(never, "Never married", married)
    c["marital_stat"] = marital
    spouse_present = marital == "Married-civilian spouse present"
    fam = np.empty(n, dtype=object)
    fam[child] = _pick(rng, n, (0.9, "Child <18 never marr not in subfamily"),
                       (0.06, "Grandchild <18 never marr not in subfamily"),
                       (0.04, "Child under 18 of RP of unrel subfamily"))[child]
    nm = never & adult
    at_home = _sigmoid(2.0 - 0.25 * (age - 18))
    fam[nm] = _pick(rng, n, (at_home, "Child 18+ never marr Not in a subfamily"),
                    (0.45, "Nonfamily householder"), (0.15, "Secondary individual"),
                    (0.08, "Other Rel 18+ never marr not in subfamily"),
                    (0.04, "Grandchild 18+ never marr not in subfamily"),
                    (0.05, "Householder"), (0.03, "In group quarters"),
                    (0.02, "RP of unrelated subfamily"))[nm]
    fam[spouse_present] = np.where(male, _pick(rng, n, (0.9, "Householder"), (0.1, "Spouse of householder")),
                                   _pick(rng, n, (0.2, "Householder"), (0.8, "Spouse of householder")))[spouse_present]
    other = ~never & ~spouse_present
    fam[other] = _pick(rng, n, (0.45, "Nonfamily householder"), (0.3, "Householder"),
                       (0.12, "Child 18+ ever marr Not in a subfamily"),
                       (0.1, "Secondary individual"), (0.03, "In group quarters"))[other]
    c["det_hh_fam_stat"] = fam
    summ = {"Householder": "Householder", "Nonfamily householder": "Householder",
            "Spouse of householder": "Spouse of householder",
            "Child <18 never marr not in subfamily": "Child under 18 never married",
            "Child 18+ never marr Not in a subfamily": "Child 18 or older",
            "Child 18+ ever marr Not in a subfamily": "Child 18 or older",
            "Grandchild <18 never marr not in subfamily": "Other relative of householder",
            "Grandchild 18+ never marr not in subfamily": "Other relative of householder",
            "Other Rel 18+ never marr not in subfamily": "Other relative of householder",
            "Child under 18 of RP of unrel subfamily": "Nonrelative of householder",
            "RP of unrelated subfamily": "Nonrelative of householder",
            "Secondary individual": "Nonrelative of householder",
            "In group quarters": "Group Quarters- Secondary individual"}
    c["det_hh_summ"] = np.array([summ[v] for v in fam], dtype=object)
    old = age >= 65
    joint = np.where(old, _pick(rng, n, (0.5, "Joint both 65+"), (0.5, "Joint one under 65 & one 65+")),
                     _pick(rng, n, (0.92, "Joint both under 65"), (0.08, "Joint one under 65 & one 65+")))
    c["tax_filer_stat"] = np.where(
        child, "Nonfiler",
        np.where(spouse_present, _pick(rng, n, (0.9, joint), (0.1, "Nonfiler")),
                 _pick(rng, n, (0.65, "Single"), (0.2, "Nonfiler"), (0.15, "Head of household"))))
    c["fam_under_18"] = np.where(child, _pick(rng, n, (0.72, "Both parents present"),
                                              (0.22, "Mother only present"),
                                              (0.04, "Father only present"),
                                              (0.02, "Neither parent present")), "Not in universe")
    c["vet_question"] = np.where(child | (age < 18), "Not in universe",
                                 np.where(rng.random(n) < 0.01, np.where(male, "Yes", "No"),
                                          "Not in universe"))
    c["vet_benefits"] = np.where(child, 0, np.where(rng.random(n) < 0.02, 1, 2))

    # survey year and migration: the 1995 rows have '?' in the migration columns
    year = np.where(rng.random(n) < 0.5, 94, 95)
    c["year"] = year
    mover = rng.random(n) < 0.15
    q = year == 95
    c["mig_chg_msa"] = np.where(q, "?", np.where(mover, _pick(rng, n, (0.6, "MSA to MSA"),
                                                             (0.2, "NonMSA to nonMSA"),
                                                             (0.1, "MSA to nonMSA"),
                                                             (0.1, "NonMSA to MSA")), "Nonmover"))
    c["mig_chg_reg"] = np.where(q, "?", np.where(mover, _pick(rng, n, (0.6, "Same county"),
                                                             (0.2, "Different county same state"),
                                                             (0.1, "Different region"),
                                                             (0.1, "Different state same division")),
                                                 "Nonmover"))
    c["mig_move_reg"] = np.where(q, "?", np.where(mover, _pick(rng, n, (0.6, "Same county"),
                                                              (0.2, "Different county same state"),
                                                              (0.1, "Different state in South"),
                                                              (0.1, "Different state in West")),
                                                  "Nonmover"))
    c["mig_same"] = np.where(age < 1, "Not in universe under 1 year old",
                             np.where(mover, "No", "Yes"))
    c["mig_prev_sunbelt"] = np.where(q, "?", np.where(mover, np.where(rng.random(n) < 0.3, "Yes", "No"),
                                                      "Not in universe"))
    far = mover & ~q & (rng.random(n) < 0.3)
    c["region_prev_res"] = np.where(far, np.array(REGIONS, dtype=object)[rng.integers(0, 5, n)],
                                    "Not in universe")
    c["state_prev_res"] = np.where(far, np.array(STATES, dtype=object)[rng.integers(0, len(STATES), n)],
                                   "Not in universe")
    c["instance_weight"] = np.round(rng.gamma(4.0, 450.0, n) + 50, 2)

    # money: capital gains, losses, dividends, then the income label
    c["capital_gains"] = np.where(adult & (rng.random(n) < 0.04 + 0.004 * rank),
                                  rng.integers(100, 30000, n), 0)
    c["capital_losses"] = np.where(adult & (rng.random(n) < 0.02), rng.integers(150, 4000, n), 0)
    c["stock_dividends"] = np.where(adult & (rng.random(n) < 0.1), rng.integers(1, 10000, n), 0)
    logit = (-12.0 + 0.55 * rank + 2.5 * c["weeks_worked"] / 52 + 0.04 * np.minimum(age, 55)
             + 0.6 * male + 2.5 * (c["capital_gains"] > 0)
             + 0.8 * np.isin(cw, ["Self-employed-incorporated", "Federal government"]))
    rich = adult & (rng.random(n) < _sigmoid(logit))
    c["income_50k"] = np.where(rich, "50000+.", "- 50000.")
    return c


def _drop(c, column, value, rng):
    """Replace every ``value`` of ``column`` by the column's other values."""
    col = c[column]
    hit = col == value
    others = col[~hit]
    if hit.any() and len(others):
        col[hit] = others[rng.integers(0, len(others), int(hit.sum()))]


def format_rows(c):
    """Raw text lines (with newline) of the rows in ``c``."""
    out = []
    for col in COLUMNS:
        v = c[col]
        if col == "instance_weight":
            out.append([f"{x:.2f}" for x in v])
        else:
            out.append([str(x) for x in v])
    return [", ".join(fields) + "\n" for fields in zip(*out)]


def generate(path, n_rows, seed, gzip=None, drop_category=None):
    """Write ``n_rows`` synthetic rows to ``path`` (gzip when ``gzip`` is true,
    or, when None, when ``path`` ends with ``.gz``). ``seed``: an int or a
    sequence of ints for :func:`numpy.random.default_rng`. ``drop_category``:
    optional ``(column, value)`` that must not occur (rows that drew it get
    another value of that column). Returns ``path``.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}")
    rng = np.random.default_rng(seed)
    c = sample_rows(int(n_rows), rng)
    if drop_category is not None:
        _drop(c, drop_category[0], drop_category[1], rng)
    data = "".join(format_rows(c)).encode("ascii")
    if gzip is None:
        gzip = path.endswith(".gz")
    if gzip:
        buf = io.BytesIO()
        with gzip_module.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
            gz.write(data)
        data = buf.getvalue()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path


def generate_dataset(raw_dir, train_rows, test_rows, seed, drop_test_category=True):
    """Write ``raw_dir/census-income.data.gz`` and ``census-income.test.gz``
    (independent draws from the same model). With ``drop_test_category`` the
    test file lacks :data:`DROPPED_TEST_CATEGORY`, like the real one lacks a
    ``det_hh_fam_stat`` category. Returns the two paths."""
    train = generate(os.path.join(raw_dir, TRAIN_FILE), train_rows, [int(seed), 0])
    test = generate(os.path.join(raw_dir, TEST_FILE), test_rows, [int(seed), 1],
                    drop_category=DROPPED_TEST_CATEGORY if drop_test_category else None)
    return train, test


def main(argv=None):
    from src.engine.cli import ArgumentParser
    parser = ArgumentParser(
        description="Write synthetic Census-Income (KDD) raw files (census-income.data.gz, "
                    "census-income.test.gz) whose labels follow a known model.")
    parser.add_argument("--output_dir", required=True, help="folder for the two .gz files")
    parser.add_argument("--train_rows", type=int, default=20000, help="rows of the train file (default 20000)")
    parser.add_argument("--test_rows", type=int, default=10000, help="rows of the test file (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed; same seed, same bytes (default 1)")
    parser.add_argument("--keep_test_categories", action="store_true",
                        help=f"do not drop {DROPPED_TEST_CATEGORY[0]}={DROPPED_TEST_CATEGORY[1]!r} "
                             "from the test file")
    args = parser.parse_args(argv)
    if args.train_rows < 1 or args.test_rows < 1:
        parser.error("--train_rows and --test_rows must be positive")
    for path in generate_dataset(args.output_dir, args.train_rows, args.test_rows, args.seed,
                                 drop_test_category=not args.keep_test_categories):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from src.engine.cli import run_main     # one-line errors: exit 2 for bad input
    sys.exit(run_main(main))
