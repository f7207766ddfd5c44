/* Cairn's DNS control plane: three planners race to propose plans for one managed name; the
 * ledger (consensus orders every transaction, so it is one process reading one channel)
 * applies a plan only if its base is the current generation (compare-and-set), the new
 * generation is base + 1 and the endpoint set is not empty. Planners read stale state, stall,
 * crash and restart, retry old plans and sometimes propose an empty set. History keeps at most
 * HIST generations and pruning never removes the current or the last-known-good one.
 * With -DNO_CAS the base check is removed: spin must then find a violation. */

#define MAXGEN 4
#define HIST   1
#define PLANS  2      /* plans each planner sends (a retry counts) */

chan ledger = [1] of { byte, byte, bool };   /* (base, generation, non-empty) */

byte cur = 1;                   /* current generation */
byte lkg = 1;                   /* last known good */
bool pruned[MAXGEN + 2];        /* generation g was removed from history */
bool noendpoint[MAXGEN + 2];         /* generation g has no endpoint */

active [3] proctype Planner() {
  byte view, sent = 0;
  view = cur;                                  /* read (may already be stale) */
  do
  :: atomic {
       sent < PLANS && view < MAXGEN ->
       if
       :: ledger ! view, view + 1, true
       :: ledger ! view, view + 1, false       /* a buggy planner proposes an empty set */
       fi;
       sent++
     };
     if
     :: skip                                   /* stale view kept: stall, or retry the same plan */
     :: view = cur                             /* re-reads */
     :: view = 1                               /* crashes and restarts from nothing */
     fi
  :: else -> break
  od
}

active proctype Ledger() {
  byte base, gen, old, g;
  bool filled, healthy;
end:
  do
  :: ledger ? base, gen, filled ->
     if
     :: healthy = true                         /* every endpoint healthy at evidence time */
     :: healthy = false
     fi;
     d_step {
     old = cur;
     if
#ifdef NO_CAS
     :: gen <= MAXGEN && filled ->
#else
     :: base == cur && gen == cur + 1 && gen <= MAXGEN && filled ->
#endif
        noendpoint[gen] = !filled;
        cur = gen;
        if
        :: healthy -> lkg = gen                /* last known good moves forward */
        :: else -> skip
        fi;
        g = 1;                                  /* prune beyond HIST, never cur or lkg */
        do
        :: g + HIST < cur -> if :: g != cur && g != lkg -> pruned[g] = true :: else -> skip fi; g++
        :: else -> break
        od;
        assert(cur > old);                     /* invariant 2: generations only increase */
     :: else -> skip                           /* refused: state unchanged */
     fi;
     assert(!noendpoint[cur]);                      /* invariant 3: never empty */
     assert(!pruned[cur] && !pruned[lkg])      /* invariant 4: active and LKG never pruned */
     }
  od
}

