"""Admin bases whose list pages cost the same with a thousand rows or a hundred million.

A Django changelist over a big table is slow for four reasons, each removed here once:
the exact COUNT of the whole table ("N total"), the exact COUNT of the filtered rows for the
pager, the DISTINCT over a column that a plain-value filter (market, model, ...) or the date
hierarchy reads to build its links, and facet counts. Ordering and default filters are served
by indexes declared on the models.
"""

from django.contrib import admin
from django.contrib.admin.filters import (
    AllValuesFieldListFilter,
    DateFieldListFilter,
    FieldListFilter,
)
from django.core.paginator import Paginator
from django.utils.functional import cached_property

# The pager counts at most this many rows (ten pages); past it, narrow with a filter, the
# date filter or a search.
LIST_COUNT_CAP = 1_000
# A plain-value filter offers the values seen in this many newest rows.
FILTER_RECENT_ROWS = 1_000


class CappedPaginator(Paginator):
    """Counts at most LIST_COUNT_CAP rows (one bounded COUNT over a LIMIT subquery)."""

    @cached_property
    def count(self) -> int:
        return self.object_list[:LIST_COUNT_CAP].count()


class RecentValuesFieldListFilter(AllValuesFieldListFilter):
    """The values of the newest FILTER_RECENT_ROWS rows, not a DISTINCT over the whole table.

    A value only older rows hold can still be filtered on by its URL parameter.
    """

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        # One backward walk of the primary key index, LIMITed; the distinct is done here
        # (an IN over the newest keys may be planned as a scan of the whole table).
        newest = model_admin.get_queryset(request).order_by("-pk")
        values = newest.values_list(field.name, flat=True)[:FILTER_RECENT_ROWS]
        self.lookup_choices = sorted(set(values), key=lambda value: (value is None, value))


class ScaledAdmin(admin.ModelAdmin):
    """A ModelAdmin whose changelist does no work that grows with the table.

    `date_hierarchy` (which reads the distinct years, months or days of the rows shown) is
    turned into a date list filter (today, past 7 days, this month, this year), which
    costs nothing to draw.
    """

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedPaginator

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        self.date_filter_field = self.date_hierarchy
        self.date_hierarchy = None

    def get_list_filter(self, request):
        filters = [self._bounded_filter(entry) for entry in super().get_list_filter(request)]
        if self.date_filter_field:
            filters.append((self.date_filter_field, DateFieldListFilter))
        return filters

    def _bounded_filter(self, entry):
        if not isinstance(entry, str) or "__" in entry:
            return entry
        field = self.model._meta.get_field(entry)
        chosen = FieldListFilter._field_list_filters
        for test, filter_class in chosen:
            if test(field):
                if filter_class is AllValuesFieldListFilter:
                    return (entry, RecentValuesFieldListFilter)
                return entry
        return entry


class ReadOnlyAdmin(ScaledAdmin):
    """Audit records and facts written by services: browsable, never editable here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
