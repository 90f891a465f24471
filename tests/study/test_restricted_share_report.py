"""The study report pools each arm's share of the value the SFT set leans towards over seeds."""

import pytest

from study.report import restricted_share_lines

SHARES = {  # arm -> one share per seed
    "base": [0.1, 0.0, 0.05],
    "plain_sft": [0.5, 0.3, 0.4],
    "anchored": [0.2, 0.2, 0.2],
}


def summaries(with_share: bool = True) -> dict[int, dict]:
    out = {}
    for seed in range(3):
        arms = {}
        for arm, shares in SHARES.items():
            entry = {"metrics": {}}
            if with_share:
                entry["restricted_share"] = {
                    "attribute": "library",
                    "value": "networkx",
                    "mean": shares[seed],
                    "ci_low": shares[seed] - 0.05,
                    "ci_high": shares[seed] + 0.05,
                    "n": 3,
                }
            arms[arm] = {"temperatures": {"1": entry}}
        out[seed] = {"arms": arms, "provenance": {"bootstrap": {"confidence": 0.95}}}
    return out


def test_each_arms_share_and_plain_minus_anchored_are_pooled_with_a_seed_t_interval():
    lines = restricted_share_lines(summaries(), "1")
    text = "\n".join(lines)
    assert "### Share of library networkx" in text
    plain_row = next(line for line in lines if line.startswith("| plain_sft |"))
    assert plain_row.startswith("| plain_sft | 0.400 [0.152, 0.648] | 0.500 [0.450, 0.550]")
    difference = next(line for line in lines if line.startswith("| plain_sft - anchored |"))
    # per seed +0.3, +0.1, +0.2: mean 0.2, sd 0.1, t(2) = 4.303 -> 0.2 +- 0.248
    cells = [c.strip() for c in difference.strip("|").split("|")]
    assert cells[1:4] == ["+0.300", "+0.100", "+0.200"]
    low, high = (float(x) for x in cells[4].split("[")[1].rstrip("]").split(","))
    assert (low, high) == pytest.approx((0.2 - 0.2484, 0.2 + 0.2484), abs=1e-3)


def test_no_section_when_eval_measured_no_restricted_value():
    assert restricted_share_lines(summaries(with_share=False), "1") == []
