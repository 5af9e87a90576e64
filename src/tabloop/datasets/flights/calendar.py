"""Calendar facts that hold in any month: distance to public holidays."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable

from pandas.tseries.holiday import USFederalHolidayCalendar


def federal_holidays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Observed US federal holidays from a year before ``start`` to a year after ``end``."""
    calendar = USFederalHolidayCalendar()
    days = calendar.holidays(start=dt.date(start.year - 1, 1, 1), end=dt.date(end.year + 1, 12, 31))
    return sorted(day.date() for day in days)


def days_to_nearest(dates: Iterable[dt.date], holidays: list[dt.date]) -> dict[dt.date, int]:
    """For each date, the number of days to the nearest holiday (before or after)."""
    result: dict[dt.date, int] = {}
    for day in dates:
        i = bisect.bisect_left(holidays, day)
        neighbours = holidays[max(i - 1, 0) : i + 1]
        result[day] = min(abs((h - day).days) for h in neighbours)
    return result
