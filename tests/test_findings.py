"""The intro's generated "what we found" table (ccc_lib.findings): headline claims picked by key pattern,
verdicts from the metrics files (three-valued when recorded), intervals, a clear fallback, the markers."""
import json

from ccc_lib.findings import MARKER, PDF_MARKER, claim_verdict, findings_markdown, headline_rows, write_findings


def _row(key, holds, ours=0.5, claim=None, **extra):
    return {"key": key, "claim": claim or f"{key}: text", "paper": "not reported", "ours": ours, "bound": "",
            "holds": holds, "asserted at": "default", "due": False, **extra}


def _metrics():
    return {
        "01_counterfeits": {"profile": "smoke", "status": "ok", "claims": [
            _row("confidence_mnist5k", True, 0.9971234, claim="mnist5k: near-certain"),
            _row("confidence_fashion_mnist", True, 0.99, claim="fashion_mnist: near-certain"),
            _row("share099_mnist5k", None)]},
        "02_neuralfp": {"profile": "smoke", "status": "ok", "claims": [
            _row("auroc_mnist_other_eng", False), _row("auroc_fashion_mnist_vs_mnist", False, 0.61,
                                                       interval={"estimate": 0.61, "lo": 0.55, "hi": 0.66})]},
        "03_iocn": {"profile": "smoke", "status": "ok", "claims": [
            _row("iocn_ge_flow_study_setting", True, 0, claim="IOCN − FLOW at the study's setting"),   # never the headline
            _row("iocn_vs_best_pixels", True, claim="IOCN − best baseline (pixels; 1 seed(s))", verdict="wins"),
            _row("iocn_vs_best_cnn_mnist5k", False, -3.2, claim="IOCN − best baseline, mean AUROC (learned features)",
                 verdict="loses"),
            _row("iocn_vs_flow_cnn_mnist5k", False, 0.4, claim="IOCN − FLOW, mean AUROC (learned features)",
                 verdict="wins")]},
        "04_drift": {"profile": "smoke", "status": "ok", "claims": [
            _row("mnist_ood_detected", True, verdict="not resolved", lo=0.2, hi=0.9)]},
        "05_report": {"profile": "smoke", "status": "ok", "claims": [_row("chapters_ok", True)]},
    }


def test_headlines_verdicts_and_fallback():
    rows = {r["chapter"]: r for r in headline_rows(_metrics())}
    assert rows["01_counterfeits"]["verdict"] == "reproduced"
    assert rows["01_counterfeits"]["ours"] == "mnist5k: 0.9971; fashion_mnist: 0.99"
    # the engineering-bound claim is never the headline; the interval is shown
    assert rows["02_neuralfp"]["verdict"] == "not reproduced" and rows["02_neuralfp"]["ours"] == "0.61 [0.55, 0.66]"
    # the learned-features rows are preferred over the pixels one; both of the abstract's claims count: FLOW
    # beaten (wins), the best baseline matched — without an equivalence claim that is not resolved, whatever
    # the comparison says (issue 38), and the note says why
    assert rows["03_iocn"]["verdict"] == "not resolved"
    assert "a tie within uncertainty is not a match" in rows["03_iocn"]["note"]
    assert rows["03_iocn"]["ours_parts"] == ["IOCN − best baseline: -3.2", "IOCN − FLOW: 0.4"]
    # a headline judged on a point estimate says so
    assert "no interval" in rows["01_counterfeits"]["note"] and "no interval" not in rows["02_neuralfp"]["note"]
    assert rows["04_drift"]["verdict"] == "not resolved" and rows["04_drift"]["ours"] == "0.5 [0.2, 0.9]"
    # no cf_verdict key: the first judged claim, and the row says so
    assert rows["05_report"]["verdict"] == "reproduced" and "not found" in rows["05_report"]["note"]


def test_missing_chapter_and_mixed_verdicts():
    m = _metrics()
    del m["04_drift"]
    m["01_counterfeits"]["claims"][1]["holds"] = False
    rows = {r["chapter"]: r for r in headline_rows(m)}
    assert rows["04_drift"]["verdict"] == "not run" and "did not run" in rows["04_drift"]["note"]
    assert rows["01_counterfeits"]["verdict"] == "not reproduced (1 of 2 hold)"
    assert claim_verdict({"holds": None}) is None and claim_verdict({"holds": 1}) == "holds"
    # Claims' recorded three-valued verdicts and comparisons win over the point estimate's holds
    assert claim_verdict({"holds": True, "verdict": "not resolved", "interval": [0.1, 0.9]}) == "not resolved"
    assert claim_verdict({"holds": True, "verdict": "tie within uncertainty"}) == "not resolved"
    assert claim_verdict({"holds": False, "verdict": "loses"}) == "does not hold"
    assert claim_verdict({"holds": None, "verdict": "wins"}) == "holds"


def test_markdown_and_staged_intro(tmp_path):
    md = findings_markdown(_metrics())
    assert md.startswith("```{list-table}") and ":name: tbl-findings" in md and md.endswith("```")
    assert "[Counterfeits](../notebooks/01_counterfeits.ipynb)" in md
    assert '<span class="ccc-verdict-holds">✓ reproduced</span>' in md and md.count("(1 of 2 hold)") == 0
    assert md.count('<span class="ccc-verdict-open">? not resolved</span>') == 2       # chapters 3 and 4
    (tmp_path / "metrics").mkdir()
    for stem, blob in _metrics().items():
        (tmp_path / "metrics" / f"{stem}.json").write_text(json.dumps(blob))
    intro = tmp_path / "intro.md"
    intro.write_text(f"# Title\n\n{MARKER}\n\n{PDF_MARKER}\n")
    assert write_findings(intro, tmp_path / "metrics", pdf_href="../book.pdf")
    text = intro.read_text()
    assert MARKER not in text and PDF_MARKER not in text and 'href="../book.pdf"' in text and "tbl-findings" in text
    plain = tmp_path / "plain.md"
    plain.write_text("# no marker\n")
    assert not write_findings(plain, tmp_path / "metrics")


def test_every_headline_key_is_one_its_chapter_declares():
    """The headline of each chapter is found by key patterns; a chapter that renames its key must not fall
    back to another claim (chapter 3's had become the study setting's check, shown as "reproduced"). The
    first pattern of every headline matches a key the chapter's notebook declares (``C.check``,
    ``C.compare``; f-string fields read as any text)."""
    import json
    import re
    from pathlib import Path
    from ccc_lib.findings import HEADLINES
    root = Path(__file__).resolve().parents[1]
    for h in HEADLINES:
        src = "".join("".join(c["source"]) for c in json.loads((root / "notebooks" / f"{h.chapter}.ipynb").read_text())["cells"])
        # a chapter may declare its claims behind one call into its experiments package (#40)
        pkg = root / "ccc_lib" / "experiments" / h.chapter.split("_", 1)[1]
        src += "".join(p.read_text() for p in sorted(pkg.rglob("*.py"))) if pkg.is_dir() else ""
        calls = r"\bC\.(?:check|compare|compare_every|matches)\(\s*f?"
        keys = [re.sub(r"\{[^}]*\}", "X", k) for k in re.findall(calls + r"\"([^\"]+)\"", src)]
        keys += [re.sub(r"\{[^}]*\}", "X", k) for k in re.findall(calls + r"'([^']+)'", src)]
        assert any(re.search(h.keys[0], k) for k in keys), (h.chapter, h.keys[0], sorted(set(keys))[:20])


def test_a_tie_never_becomes_matches(tmp_path, monkeypatch):
    """IOCN's paper *matches* the best baseline (difference 0.0). A comparison's tie (or win) is absence of
    evidence, not equivalence: the findings table never shows it as ✓; only an equivalence claim
    (Claims.matches: the 90 % interval inside ±δ, δ from the settings) can reproduce a match."""
    from ccc_lib.claims import Claims
    from ccc_lib.findings import HEADLINES
    from ccc_lib.stats import Interval
    h = next(x for x in HEADLINES if x.chapter == "03_iocn")

    def verdict(best, flow, eq=None):
        claims = [_row("iocn_vs_best_cnn_mnist5k", None, 0.0, claim="best (learned features)", verdict=best),
                  _row("iocn_vs_flow_cnn_mnist5k", None, 0.0, claim="FLOW (learned features)", verdict=flow)]
        if eq is not None:
            claims.append(_row("iocn_matches_best_cnn_mnist5k", None, 0.001, claim="matches (learned features)",
                               verdict=eq, kind="equivalence", margin=0.01, interval=[-0.004, 0.006]))
        return headline_rows({"03_iocn": {"profile": "default", "status": "ok", "claims": claims}}, (h,))[0]
    for best in ("tie within uncertainty", "wins", "loses"):
        assert verdict(best, "wins")["verdict"] == "not resolved"           # never ✓ without equivalence
    assert verdict("tie within uncertainty", "wins", "holds")["verdict"] == "reproduced"
    assert verdict("tie within uncertainty", "wins", "holds")["ours_parts"][1].endswith("margin ±0.01")
    assert verdict("tie within uncertainty", "wins", "not resolved")["verdict"] == "not resolved"
    assert verdict("wins", "wins", "does not hold")["verdict"] == "not reproduced (1 of 2 hold)"
    # end to end: a chapter's tie whose 90 % interval reaches past the margin is "not resolved", never "matches"
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    C = Claims("03_iocn", "smoke")
    tie = Interval(0.002, -0.011, 0.015, 0.90, "paired DeLong")
    assert C.compare("iocn_vs_best_cnn_mnist5k", "IOCN − KNN (learned features)", tie) == "tie within uncertainty"
    assert C.matches("iocn_matches_best_cnn_mnist5k", "IOCN matches KNN (learned features)", tie,
                     settings={"match_margin": 0.01}, margin_key="match_margin") == "not resolved"
    assert C.verdict("iocn_matches_best_cnn_mnist5k") == "not resolved"
    C.compare("iocn_vs_flow_cnn_mnist5k", "IOCN − FLOW (learned features)", Interval(0.02, 0.01, 0.03))
    blob = json.loads((tmp_path / "03_iocn.json").read_text())
    row = headline_rows({"03_iocn": blob}, (h,))[0]
    assert row["verdict"] == "not resolved" and "✓" not in findings_markdown({"03_iocn": blob}, headlines=(h,))
    eq = next(r for r in blob["claims"] if r["kind"] == "equivalence")
    assert eq["margin"] == 0.01 and eq["margin_setting"] == "match_margin" and eq["level"] == 0.90


def test_one_model_rows_and_a_missing_match_claim():
    from ccc_lib.findings import HEADLINES
    h = next(x for x in HEADLINES if x.chapter == "03_iocn")
    flow = _row("iocn_vs_flow_pixels", None, 0.01, claim="IOCN − FLOW (pixels)", verdict="wins",
                interval=[0.005, 0.02], one_model=True, seeds=1)
    row = headline_rows({"03_iocn": {"profile": "default", "status": "ok", "claims": [flow]}}, (h,))[0]
    assert row["ours_parts"][0].endswith("(one model)")
    # the match claim is missing altogether (no iocn_vs_best_*, no iocn_matches_best_*): it counts, not resolved
    assert row["verdict"] == "not resolved" and "not a match" in row["note"]
