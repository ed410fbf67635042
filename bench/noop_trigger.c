/*
 * The floor of a BEFORE ROW trigger: a C trigger that returns the row unchanged. Bench code
 * only (make bench builds it with PGXS); it is not part of messiah.
 */
#include "postgres.h"
#include "fmgr.h"
#include "commands/trigger.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(messiah_bench_noop_trigger);

Datum
messiah_bench_noop_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "not called as a trigger");
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}
