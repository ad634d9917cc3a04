"""The book's one table style (ccc_lib.tables): rounding, ✓/✗, intervals, readable names, the scrolling
box, and its installation as the kernel's HTML form of every DataFrame."""
import re

import numpy as np
import pandas as pd
import pytest

from ccc_lib.tables import LONG_ROWS, fmt_interval, fmt_value, format_frame, install_formatter, readable_name, to_html


@pytest.mark.parametrize("value, text", [
    (0.287243, "0.2872"), (0.5, "0.5"), (1.0, "1"), (0.99999, "1.000"), (12345.678, "12,346"),
    (1234567, "1,234,567"), (42, "42"), (np.float32(0.1234567), "0.1235"), (np.int64(7), "7"),
    (True, "✓"), (np.bool_(False), "✗"), (None, "—"), (float("nan"), "—"), (3.14159e-6, "3.142e-06"),
    (-0.0001234, "-0.0001234"), (0.0, "0"), ("text", "text"), ((1, 28, 28), "(1, 28, 28)"),
    ((0.5, 0.0005853901012035473), "(0.5, 0.0005854)"), ([0.33333333333333337], "[0.3333]"), ((3,), "(3,)"),
    (list(range(20)), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, …]"), (np.array([0.1234567, 2.0]), "[0.1235, 2]"),
])
def test_fmt_value(value, text):
    assert fmt_value(value) == text


def test_interval_objects_and_dicts():
    class Interval:
        estimate, lo, hi = 0.75, 0.7012345, 0.801
    assert fmt_value(Interval()) == "0.75 [0.701, 0.801]"
    assert fmt_value({"estimate": 0.5, "lo": 0.4, "hi": 0.6, "level": 0.95}) == "0.5 [0.4, 0.6]"
    assert fmt_interval(0.99351, 0.99102, 0.99597) == "0.994 [0.991, 0.996]"


def test_readable_names():
    assert readable_name("n_counterfeits") == "n counterfeits"
    assert readable_name("run time (s)") == "run time (s)"
    assert readable_name(("AUROC", "min")) == "AUROC · min"


def test_no_number_in_the_html_has_more_than_six_significant_digits():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.random((5, 4)) * [1, 1e3, 1e-5, 1e9], columns=["a_b", "c", "d", "e"])
    df["ok"] = [True, False, True, True, False]
    text = re.sub(r"<[^>]+>", " ", to_html(df))
    for tok in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", text):
        digits = tok.replace(",", "").replace(".", "").lstrip("0")
        if "." not in tok:
            digits = digits.rstrip("0")
        assert len(digits) <= 6, tok
    assert "✓" in text and "✗" in text and "True" not in text and "a b" in text


def test_claims_holds_column_and_grouped_index():
    df = pd.DataFrame({"chapter": ["01", "01", "02"], "claim": ["x", "y", "z"], "holds": ["yes", "NO", ""],
                       "ours": [0.123456, 2, None]}).set_index(["chapter", "claim"])
    shown = format_frame(df)
    assert list(shown["holds"]) == ["✓", "✗", ""]
    assert list(shown["ours"]) == ["0.1235", "2", "—"]
    html = to_html(df)
    # one header row; grouped by chapter: the chapter written once per group, in the index's bold column
    assert html.startswith('<div class="ccc-table">') and "ccc-index-2" in html and html.count("<tr") == 4
    assert html.count("<td>01</td>") == 1 and "<td></td>" in html and "<th>chapter</th>" in html


def test_three_level_grouping_blanks_each_repeated_level():
    df = pd.DataFrame({"ch": [2, 2, 2, 3], "looks": ["conf", "conf", "feat", "conf"], "det": list("abcd"),
                       "v": [1, 2, 3, 4]}).set_index(["ch", "looks", "det"])
    cells = re.findall(r"<td>(.*?)</td>", to_html(df))
    rows = [cells[i:i + 4] for i in range(0, len(cells), 4)]
    assert rows == [["2", "conf", "a", "1"], ["", "", "b", "2"], ["", "feat", "c", "3"], ["3", "conf", "d", "4"]]


def test_long_tables_scroll_in_a_box():
    html = to_html(pd.DataFrame({"x": range(LONG_ROWS + 1)}))
    assert "ccc-table-long" in html and f"{LONG_ROWS + 1} rows" in html
    assert "ccc-table-long" not in to_html(pd.DataFrame({"x": range(3)}))


def test_series_and_bad_input():
    assert "ccc-table" in to_html(pd.Series([1.23456789], name="v"))
    with pytest.raises(TypeError):
        to_html([1, 2])


def test_install_formatter_outside_ipython_is_a_no_op(monkeypatch):
    import IPython
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)      # outside IPython, whatever other tests left
    assert install_formatter() is False


def test_install_formatter_in_a_shell():
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    try:
        assert install_formatter(ip)
        data, _ = ip.display_formatter.format(pd.DataFrame({"p_value": [0.0123456]}))
        assert 'class="ccc-table"' in data["text/html"] and "0.01235" in data["text/html"]
    finally:
        ip.display_formatter.formatters["text/html"].pop(pd.DataFrame, None)
        InteractiveShell.clear_instance()
