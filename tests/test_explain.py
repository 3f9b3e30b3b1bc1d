"""`cnnlab explain`: the lectures' worked examples, reproduced by the scratch kernels."""

import re

import pytest

from cnnlab.scratch.explain import TOPICS, explain, parse_matrix


def grid_after(text, header):
    """The rows of numbers printed right after the line `header`."""
    lines = text.splitlines()
    i = lines.index(header) + 1
    rows = []
    while i < len(lines) and re.fullmatch(r"\s+[-\d. ]+", lines[i]):
        rows.append(lines[i].split())
        i += 1
    return rows


def test_conv_reproduces_the_worked_example():
    text = explain("conv")
    assert grid_after(text, "Output:") == [["4", "3", "4"], ["2", "4", "3"], ["2", "3", "4"]]
    assert ("out[0,0] (rows 0..2, cols 0..2) = 1*1 + 1*0 + 1*1 + 0*0 + 1*1 + 1*0 + 0*1 + 0*0 "
            "+ 1*1 = 4") in text
    assert "(5 - 3 + 2*0) / 1 + 1 = 3" in text


def test_stride_one_vs_two():
    text = explain("stride")
    assert "1 1\n    0 1" in text  # the centre filter with stride 2
    assert "windows start at (0,0) (0,2) (2,0) (2,2)" in text


def test_padding_and_output_size():
    text = explain("padding")
    assert "P = 1, S = 1: (5 - 3 + 2*1) / 1 + 1 = 5" in text
    assert "F = 7: P = 3, 32 -> 32" in text
    sizes = explain("output-size")
    for line in ["W = 5, F = 3, S = 2, P = 1: (5 - 3 + 2*1) / 2 + 1 = 3",
                 "W = 7, F = 3, S = 2, P = 0: (7 - 3 + 2*0) / 2 + 1 = 3", "32 -> 28 -> 24"]:
        assert line in sizes
    assert "W = 7, F = 3, S = 3, P = 0: (7 - 3 + 2*0) / 3 + 1 = 2.33: not an integer, the " \
           "filter does not fit" in sizes


def test_pooling_examples():
    text = explain("pooling")
    assert grid_after(text, "Max pooling:") == [["6", "8"], ["5", "3"]]
    text = explain("pooling", input="1 1 2 3; 4 6 6 8; 3 1 1 0; 1 2 2 4")
    assert grid_after(text, "Max pooling:") == [["6", "8"], ["3", "4"]]
    assert grid_after(text, "Average pooling:") == [["3", "4.75"], ["1.75", "1.75"]]


def test_stochastic_pooling_probabilities():
    text = explain("stochastic-pooling")
    assert "p = 0.077 0.077 0.385 0.462" in text
    assert "inference: sum p_i a_i = 4.846" in text  # (1 + 1 + 25 + 36) / 13


def test_rgb_conv_and_params():
    text = explain("rgb-conv")
    assert grid_after(text, "Sum of the three maps + bias w0 = 1:") == grid_after(
        text, "conv2d on the 3-channel input gives the same map:")
    params = explain("params")
    assert "output 32x32x10" in params and "10 filters: 760 parameters" in params
    assert "34,944 parameters" in params


def test_user_matrices_stride_and_padding():
    text = explain("conv", input="1 1 1 0 0; 0 1 1 1 0; 0 0 1 1 1; 0 0 1 1 0; 0 1 1 0 0",
                   kernel="1 0 1; 0 1 0; 1 0 1", stride=2, padding=1)
    assert "Zero-padded by 1:" in text
    assert "(5 - 3 + 2*1) / 2 + 1 = 3" in text
    assert len(grid_after(text, "Output:")) == 3


def test_bad_input_raises_one_line_value_errors():
    with pytest.raises(ValueError, match="unknown topic 'convv'; choose one of: conv, stride"):
        explain("convv")
    with pytest.raises(ValueError, match="--input: rows have different lengths"):
        explain("conv", input="1 2 3; 4 5")
    with pytest.raises(ValueError, match="--kernel: 'x' is not a number"):
        explain("conv", kernel="1 x; 0 1")
    with pytest.raises(ValueError, match="does not fit"):
        explain("conv", input="; ".join(["1 2 3 4 5 6 7"] * 7), stride=3)
    with pytest.raises(ValueError, match="the default 3x3 filter is larger than the 2x2 input"):
        explain("conv", input="1 2; 3 4")
    with pytest.raises(ValueError, match="--kernel: a 3x3 filter is larger than the 2x2 input"):
        explain("conv", input="1 2; 3 4", kernel="1 0 1; 0 1 0; 1 0 1")
    for topic in TOPICS:
        assert explain(topic)


def test_parse_matrix():
    assert parse_matrix("1, 2; 3 4\n5 6").tolist() == [[1, 2], [3, 4], [5, 6]]
