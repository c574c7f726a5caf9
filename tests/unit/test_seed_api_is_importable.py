import pytest

import marketpulse


def test_the_seed_api_is_importable_from_the_package() -> None:
    from marketpulse import (  # noqa: F401 - the import is the test
        AlertCondition,
        AlertManager,
        AlertType,
        CacheManager,
        DataFetcher,
        StockData,
        StockMonitor,
    )

    assert AlertType.PRICE_THRESHOLD.value == "price_threshold"
    assert set(marketpulse.__all__) >= {"StockData", "DataFetcher", "StockMonitor"}


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = marketpulse.NoSuchThing
