"""Property: validation accepts exactly the band tables that give every value one band, and the
engine picks that band (Band.contains is the reference meaning of the edges)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from models.rules.engine import _compile_rule, _eval_bands, _Patient
from models.rules.readings import PatientReadings
from models.rules.schema import Band, BandsRule
from models.rules.validate import band_problems

RANKS = {"green": 0, "yellow": 1, "red": 2}


@st.composite
def tilings(draw):
    """A valid table: sorted edges, each edge owned by exactly one side."""
    edges = sorted(draw(st.sets(st.integers(0, 100), min_size=1, max_size=5)))
    upper_owns = draw(st.lists(st.booleans(), min_size=len(edges), max_size=len(edges)))
    bands, lower = [], None
    for edge, owned in zip(edges, upper_owns, strict=True):
        band = {} if lower is None else lower
        band["le" if owned else "lt"] = edge
        bands.append(band)
        lower = {"gt" if owned else "ge": edge}
    bands.append(lower)
    return [Band(**b) for b in bands], edges


def _probe_values(edges):
    return sorted({v for e in edges for v in (e - 0.5, e, e + 0.5)} | {-1000.0, 1000.0})


def _engine_band(bands, value):
    rule = BandsRule(id="r", type="bands", measurement="spo2", unit="%", bands=bands)
    cr = _compile_rule(rule, "test", None, RANKS, {})
    patient = PatientReadings(as_of_s=100, age_years=50, series={"spo2": ([100], [value])})
    raw = _eval_bands(cr, _Patient(patient))
    return None if raw is None else raw[5]


@settings(max_examples=150, deadline=None)
@given(tilings())
def test_valid_tables_cover_every_value_once_and_the_engine_agrees(tiling):
    bands, edges = tiling
    assert band_problems("/bands", bands, RANKS, "both") == []
    for value in _probe_values(edges):
        containing = [i for i, b in enumerate(bands) if b.contains(value)]
        assert len(containing) == 1, (value, bands)
        assert _engine_band(bands, value) == containing[0]


@settings(max_examples=150, deadline=None)
@given(tilings(), st.data())
def test_a_moved_edge_is_refused_and_really_leaves_a_gap_or_overlap(tiling, data):
    bands, edges = tiling
    i = data.draw(st.integers(1, len(bands) - 1))
    shift = data.draw(st.sampled_from([-1, 1]))
    lower = bands[i].lower
    assert lower is not None
    moved = bands[i].model_copy(update={"ge" if lower[1] else "gt": lower[0] + shift})
    broken = [*bands[:i], moved, *bands[i + 1 :]]
    problems = band_problems("/bands", broken, RANKS, "both")
    assert problems and problems[0].path.startswith("/bands/")
    counts = [sum(b.contains(v) for b in broken) for v in _probe_values([*edges, lower[0] + shift])]
    assert any(c != 1 for c in counts)
