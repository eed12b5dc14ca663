"""The report's paradigm agreement on the paper's own numbers (tests/fixtures/paper_numbers.yaml, facts from
the LIMIT paper): the Instruct-trained models lead the gauntlet, the judge prefers the LIMA-trained ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from limit.gauntlet.benchmarks import CATEGORIES
from limit.report.agreement import groups, paradigm_agreement
from limit.report.markdown import agreement_section

PAPER = yaml.safe_load((Path(__file__).parent / "fixtures" / "paper_numbers.yaml").read_text())


def paper_models() -> list[dict]:
    return [
        {
            "name": name,
            "average": scores[0],
            "categories": dict(zip(CATEGORIES, scores[1:], strict=True)),
            "dataset": PAPER["datasets"][name],
            "base": "-".join(name.split("-")[:2]),
        }
        for name, scores in PAPER["gauntlet"].items()
    ]


def paper_pairs() -> list[dict]:
    """Each pair's published mean win rate; per-seed counts are not published, so every seed is taken at the
    mean over all its prompts (the counted bootstrap draws them binomially)."""
    n, out = PAPER["prompts_per_seed"], []
    for base, prompts, a, b, rate in PAPER["win_rates"]:
        wins = round(rate / 100 * n)
        seeds = {str(s): {"wins_a": wins, "wins_b": n - wins} for s in range(1, PAPER["seeds"] + 1)}
        out.append({"a": a, "b": b, "prompts": prompts, "base": base, "win_rate_a": rate / 100, "seeds": seeds})
    return out


def test_the_papers_finding_from_its_own_numbers():
    found = paradigm_agreement(paper_models(), paper_pairs(), lambda _: None, lambda _: None)
    by_group = {(g["base"], g["prompts"]): g for g in found}
    assert sorted(by_group) == [(b, p) for b in ("mpt-30b", "mpt-7b") for p in ("instruct-v3", "lima")]
    # by hand from the tables: 7B on LIMA prompts, 2 of 6 model pairs ordered alike; 7B on Instruct, 1 of 6
    expected_tau = {("mpt-7b", "lima"): -1 / 3, ("mpt-7b", "instruct-v3"): -2 / 3}
    expected_tau |= {("mpt-30b", "lima"): -1.0, ("mpt-30b", "instruct-v3"): -1.0}
    for key, group in by_group.items():
        datasets = {m["name"]: m["dataset"] for m in group["models"]}
        (gauntlet_leader,), (judge_leader,) = group["gauntlet_leader"], group["judge_leader"]
        assert "lima" not in datasets[gauntlet_leader]  # an Instruct-trained model leads the gauntlet
        assert "lima" in datasets[judge_leader]  # the judge prefers a LIMA-trained one
        assert group["strength"] == f"win rate against {key[0]}-lima"  # the paper's pairs form a star
        assert group["tau"]["tau"] == pytest.approx(expected_tau[key])
        low, high = group["tau"]["ci95"]
        assert low <= group["tau"]["tau"] <= high and high < 0  # the rankings disagree beyond the judge's noise
        assert len(group["disagreements"]) == round((1 - expected_tau[key]) / 2 * 6)
        for category, tau in group["category_tau"].items():  # each category's tau has its interval too
            ci = group["category_tau_ci95"][category]
            assert tau is None or ci[0] - 1e-12 <= tau <= ci[1] + 1e-12, (key, category, tau, ci)
    assert by_group[("mpt-30b", "lima")]["gauntlet_leader"] == ["mpt-30b-instruct-v3-1k"]
    assert by_group[("mpt-30b", "lima")]["judge_leader"] == ["mpt-30b-lima"]
    leaders = ("mpt-30b-instruct-v3-1k", "mpt-30b-lima")
    gap = next(d for d in by_group[("mpt-30b", "lima")]["disagreements"] if (d["a"], d["b"]) == leaders)
    assert gap["gauntlet"]["difference"] == pytest.approx(0.466 - 0.439)
    assert gap["judge"]["difference"] == pytest.approx((1 - 0.795) - 0.5) and gap["judge"]["distinguishable"]
    assert gap["gauntlet"]["ci95"] is None  # the paper publishes no per-row scores: the gauntlet is held fixed

    text = "\n".join(agreement_section({"agreement": found}))
    assert "The gauntlet ranks mpt-30b-instruct-v3-1k (instruct-v3-1k) first; the judge prefers mpt-30b-lima" in text
    assert "the paradigms rank these models the other way round" in text
    ci = by_group[("mpt-30b", "lima")]["category_tau_ci95"]["world_knowledge"]
    assert f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" in text


def test_groups_are_prompt_sets_and_connected_models():
    pairs = [
        {"a": "x", "b": "y", "prompts": "p"},
        {"a": "u", "b": "v", "prompts": "p"},
        {"a": "y", "b": "z", "prompts": "p"},
        {"a": "x", "b": "y", "prompts": "q"},
    ]
    found = [(prompts, [(p["a"], p["b"]) for p in members]) for prompts, members in groups(pairs)]
    assert found == [("p", [("x", "y"), ("y", "z")]), ("p", [("u", "v")]), ("q", [("x", "y")])]


def test_an_even_pair_is_a_tie_for_the_judge_not_a_leader():
    models = [
        {"name": n, "average": a, "categories": {}, "dataset": n, "base": "m"} for n, a in (("x", 0.2), ("y", 0.1))
    ]
    pair = {
        "a": "x",
        "b": "y",
        "prompts": "p",
        "base": "m",
        "win_rate_a": 0.5,
        "seeds": {"1": {"wins_a": 4, "wins_b": 4}},
    }
    (group,) = paradigm_agreement(models, [pair], lambda _: None, lambda _: None)
    assert group["strength"] == "win rate against y" and group["judge_leader"] == ["x", "y"]
    assert group["ranks"]["judge"] == {"x": 1, "y": 1} and group["tau"]["tau"] is None
    assert "the judge prefers x (x) and y (y) (tied)" in "\n".join(agreement_section({"agreement": [group]}))
