import numpy as np
import pytest

from cardiosynth.data.labels import Group, as_label_map, parse_group


def test_parse_group_is_case_insensitive() -> None:
    assert parse_group(" hcm ") is Group.HCM


def test_parse_group_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="'XYZ'"):
        parse_group("XYZ")


def test_as_label_map_accepts_integral_floats() -> None:
    out = as_label_map(np.array([0.0, 1.0, 2.0, 3.0]))
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("bad", [4, -1, 2.5])
def test_as_label_map_rejects_values_outside_acdc(bad: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        as_label_map(np.array([0, 1, bad]), what="x.nii.gz")


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_integer_maps_outside_acdc_are_named_whatever_the_dtype(dtype: type) -> None:
    assert as_label_map(np.array([[0, 3], [2, 1]], dtype=dtype)).dtype == np.uint8
    bad = [0, 1, 7] if dtype == np.uint8 else [0, -1, 7]
    with pytest.raises(ValueError, match="7"):
        as_label_map(np.array(bad, dtype=dtype))
    assert as_label_map(np.zeros((0, 4), dtype=dtype)).shape == (0, 4)
