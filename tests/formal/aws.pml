/* The AWS DynamoDB DNS automation of October 2025, as we understand it from the public
 * post-incident summary: one Planner writes numbered plans; independent Enactors each take the
 * newest plan, check ONCE that it is newer than the active one, apply it (slowly; the check can
 * go stale meanwhile), then clean up plans much older than the one they applied.
 * Spin must find the trace where the active plan is deleted (the endpoint's records vanish). */

#define MAXGEN 4      /* plans 0..MAXGEN; plan 0 is active at the start */
#define KEEP   1      /* clean-up deletes plans older than (applied - KEEP) */

byte applied = 0;              /* the plan the endpoint currently resolves from */
byte newest = 0;               /* plans 0..newest were written */
bool gone[MAXGEN + 1];         /* plan g was deleted by a clean-up */

active proctype Planner() {
  do
  :: newest < MAXGEN -> newest++
  :: else -> break
  od
}

active [2] proctype Enactor() {
  byte mine, g;
  do
  :: atomic { mine = newest }              /* pick the newest plan */
     if
     :: mine > applied ->                   /* "is my plan newer?" -- checked once */
        skip;                              /* the long apply: other processes run here */
        applied = mine;                     /* overwrite, whatever happened meanwhile */
        g = 0;                             /* clean-up of plans much older than mine */
        do
        :: g + KEEP < mine -> gone[g] = true; g++
        :: else -> break
        od
     :: else -> skip
     fi
  :: mine == MAXGEN -> break
  od
}

/* The endpoint resolves only while its active plan still exists. */
ltl active_plan_exists { [] !gone[applied] }

