/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Promela model of shmbus's data path. model/README.md says what it
 * covers, what it leaves out and why; scripts/model.sh runs it and its
 * mutants. One publisher, NSUB (1 or 2) subscribers, one service:
 *
 *   - the submission ring with drop-oldest eviction (ring.h; publisher.c
 *     deliver, make_room), conn.head being the one word with two writers:
 *     the subscriber's take and the publisher's eviction both advance it
 *     by compare-and-swap (an atomic block here);
 *   - the completion ring (ring.h shmbus__done_push; publisher.c collect);
 *   - the publisher's private reference counts and LIFO free stack
 *     (pool.h), per-connection in-flight marks, `inflight` and `shadow`;
 *   - the history (history_push, history_replay);
 *   - binding (update_connections, bind) and a subscriber that may die at
 *     any point: its slot is then freed by a reaper (service.c
 *     shmbus__service_reap) and its chunks reclaimed by the publisher
 *     (update_connections -> unbind -> reclaim_all).
 *
 * Spin is sequentially consistent. Where the C relies on release/acquire
 * ordering, the correct model performs the accesses in program order and
 * a mutant performs them in an order the missing barrier would allow. A
 * chunk's payload is the sequence number in its header (chunk_seq): a
 * subscriber that reads a stale or reused chunk reads another number.
 *
 * Granularity: each step of a process is one atomic block. A step holds
 * one access to a shared word, with the private bookkeeping around it,
 * unless a comment says why it can hold more: accesses that commute with
 * everything the other processes can do meanwhile.
 *
 * Properties (assertions, tagged (a) to (d); model/README.md):
 *   (a) no chunk is handed out for a new loan, or referenced while free,
 *       while a live honest subscriber holds it, has it queued or has its
 *       completion pending, or the history references it;
 *   (b) each live honest subscriber takes each sample at most once, in
 *       order, and at the end taken + lost == offered;
 *   (c) no completion is accepted for a chunk not in flight on that
 *       connection, no double release reaches the pool, and the user's
 *       release of a sample it does not hold is refused (STALE);
 *   (d) a subscriber reads the sample it was told: the entry at its
 *       position, with the payload published with it, unchanged while held.
 *
 * Flags (-D): NSUB, NPUB; NODEATH (nobody dies); FORGE (subscriber FORGER
 * pushes one forged completion); STALE (subscriber 0's user releases a
 * stale copy of a sample it released before); MUTANT_* (README.md).
 */

/* ---- configuration ---------------------------------------------------- */

#ifndef NSUB
#define NSUB 2        /* subscriber slots (max_subscribers): 1 or 2        */
#endif
#define DEPTH 2       /* queue_depth                                       */
#define CAP 2         /* queue_cap = next_pow2(DEPTH) (service.c layout)   */
#define HELD 1        /* max_held                                          */
#define HIST 1        /* history                                           */
#define LOANS 1       /* max_loans: one loan at a time                     */
#define LIMIT 3       /* inflight_limit = DEPTH + HELD (publisher.c open)  */
#define DCAP 4        /* done_cap = next_pow2(DEPTH + HELD)                */
#if NSUB == 2
#define NCHUNK 8      /* NSUB * (DEPTH + HELD) + HIST + LOANS (service.c)  */
#else
#define NCHUNK 5
#endif
#ifndef NPUB
#define NPUB 6        /* samples published                                 */
#endif
#define NONE 255
#define DYING (NSUB - 1)  /* the subscriber that may die                   */
#define FORGER (NSUB - 1) /* the one that may forge a completion (FORGE)   */

#define BIT(c) (1 << (c))
#define S(k, i) ((k) * CAP + ((i) % CAP))   /* submission slot of position i */
#define D(k, i) ((k) * DCAP + ((i) % DCAP)) /* completion slot of position i */

/* The publisher's phases (Pub: ph). */
#define PH_LOAN 0   /* shmbus_publisher_loan, or the end of the publishes   */
#define PH_GET 1    /* the pool_get of a loan                               */
#define PH_HDR 2    /* publish_chunk: the header; deliver to each connection */
#define PH_NEXT 3   /* deliver to connection dk                             */
#define PH_HEAD 4   /* make_room: load head (load_head)                     */
#define PH_CAS 5    /* make_room: evict by compare-and-swap                 */
#define PH_REST 6   /* deliver: the in-flight limit, then the put           */
#define PH_FIN 7    /* history_push, end_loan                               */
#define PH_LATE 8   /* MUTANT_ORDER: the header, late                       */
#define PH_UPD 9    /* update_connections, then ret                         */
#define PH_COLL 10  /* collect_all, then ret                                */
#define PH_FINAL1 11 /* after the last publish: shmbus_publisher_update      */
#define PH_FINAL2 12
#define PH_WAIT 13  /* until every subscriber finished or was reaped        */
#define PH_CHK1 14
#define PH_CHECK 15 /* update, collect, then the end-state checks           */
#define PH_END 16
#define PH_AHEAD 17 /* look_ahead: after a publish, per connection          */

/* ---- shared memory ----------------------------------------------------- */

byte chunk_seq[NCHUNK];      /* data segment: chunk header .sequence = payload */
byte slot_tag[NSUB * CAP];   /* submission slot word (layout.h shmbus__conn):  */
byte slot_chunk[NSUB * CAP]; /*   tag (position + 1) | chunk, one 64-bit word  */
byte head[NSUB];             /* conn.head: take and eviction, both by CAS     */
byte done[NSUB * DCAP];      /* completion ring entries (subscriber writes)   */
byte done_tail[NSUB];        /* conn.done_tail (subscriber)                   */
byte done_head[NSUB];        /* conn.done_head (publisher)                    */
byte conn_lost[NSUB];        /* conn.lost (publisher)                         */
bit conn_bound[NSUB];        /* conn.sub_id names the subscriber              */
bit slot_ready[NSUB];        /* service registry: subscriber slot word ready  */
byte sub_gen;                /* dyn.sub_generation                            */

/* ---- the publisher's private state (publisher.c shmbus_publisher, pub_conn) */

byte refs[NCHUNK];           /* pool.refs                                     */
byte free_stack[NCHUNK];     /* pool.free_stack (LIFO)                        */
byte free_count;
byte p_loans;
byte p_seq;                  /* pub->sequence                                 */
byte p_gen;                  /* pub->sub_generation                           */
bit p_bound[NSUB];           /* c->bound_id != 0                              */
bit p_broken[NSUB];
byte p_tail[NSUB];
byte p_head_seen[NSUB];
byte p_done_head[NSUB];
byte p_lost[NSUB];
byte p_inflight[NSUB];
byte p_marks[NSUB];          /* c->marks: one bit per chunk (NCHUNK <= 8)     */
byte p_shadow[NSUB * CAP];
byte p_hist[HIST];
byte p_hist_len;
byte p_hist_start;

/* ---- ghost state: the specification, never read by the protocol -------- */

byte g_slot_seq[NSUB * CAP]; /* the sample number put with each slot word    */
byte g_own[NSUB];   /* chunks the subscriber took and has not given back      */
byte g_pend[NSUB];  /* chunks it released whose completion is not collected   */
byte g_bal[NSUB];   /* samples offered (deliver() on a connection that is not
                       broken, history replay included) minus samples taken  */
bit g_dead[NSUB];
bit g_buggy[NSUB];  /* forged a completion: its own data may be garbage now   */
bit kill[NSUB];
bit reaped[NSUB];
bit fin[NSUB];
bit pub_done;
bit pub_final;

/* The publisher's temporaries, which never live across a step: not state. */
hidden byte xt, xn, xpos, xcc, xev, xqk, xqp, xri, xid, xrn, xre;
hidden byte xbad, xqb;

/* ---- pool.h ------------------------------------------------------------ */

/* shmbus__pool_ref: only ever on a chunk in use (loaned or referenced). */
inline pool_ref(c) {
  assert(refs[c] > 0); /* (a) a reference taken on a free chunk */
  refs[c]++
}

/* shmbus__pool_unref: the chunk is free again at zero. */
inline pool_unref(c) {
  assert(refs[c] > 0); /* (c) a double release reached the pool */
  refs[c]--;
  if
  :: refs[c] == 0 ->
     assert(free_count < NCHUNK); /* (c) a chunk freed twice */
     free_stack[free_count] = c;
     free_count++
  :: else -> skip
  fi
}

/* ---- publisher.c: marks, reclaim, break ---------------------------------- */

#define marked(k, c) ((p_marks[k] & BIT(c)) != 0)
inline mark(k, c) { p_marks[k] = p_marks[k] | BIT(c); p_inflight[k]++ }
inline unmark(k, c) { p_marks[k] = p_marks[k] & (255 ^ BIT(c)); p_inflight[k]-- }

/* reclaim_all: every chunk marked on the connection, once. */
inline reclaim_all(k) {
  for (xri : 0 .. NCHUNK - 1) {
    if
    :: marked(k, xri) -> unmark(k, xri); pool_unref(xri)
    :: else -> skip
    fi
  }
  xri = 0
}

inline count_lost(k) { p_lost[k]++; conn_lost[k] = p_lost[k] } /* count_lost */

/* break_conn: reclaim, broken, sub_id = 0 (store-release). */
inline break_conn(k) {
  reclaim_all(k);
  p_broken[k] = 1;
  conn_bound[k] = 0
}

/* ---- the specification's view of a chunk ------------------------------- */

/* xqb = 1 when chunk c is queued on connection k: in a slot between head
 * and tail (tail - head <= CAP, so those slots hold exactly those entries). */
inline queued(k, c) {
  xqb = 0;
  for (xqp : head[k] .. p_tail[k]) {
    if
    :: xqp < p_tail[k] && slot_chunk[S(k, xqp)] == c -> xqb = 1
    :: else -> skip
    fi
  }
  xqp = 0
}

/* (a) A chunk handed out for a new loan is held by no live honest
 * subscriber, queued for none, not released by one with the completion
 * still uncollected (the publisher would later take that completion for the
 * new sample's), and in no history slot. */
inline check_unused(c) {
  for (xqk : 0 .. NSUB - 1) {
    if
    :: !g_dead[xqk] && !g_buggy[xqk] ->
       assert((g_own[xqk] & BIT(c)) == 0);  /* (a) loaned while a subscriber holds it */
       assert((g_pend[xqk] & BIT(c)) == 0); /* (a) loaned while its completion is pending */
       queued(xqk, c);
       assert(!xqb)                         /* (a) loaned while queued */
    :: else -> skip
    fi
  }
  for (xqk : 0 .. HIST - 1) {
    assert(xqk >= p_hist_len || p_hist[(p_hist_start + xqk) % HIST] != c) /* (a) loaned while in the history */
  }
  xqk = 0; xqb = 0
}

/* ---- publisher.c collect: the completion ring ---------------------------- */

/* collect: done_tail (shmbus__done_available, acquire), the entries below
 * it (shmbus__done_at), each checked against the marks, then done_head
 * (shmbus__done_consumed, release). One step: the subscriber writes no
 * entry below done_tail and wraps only past done_head, stored last. */
inline collect(k) {
  if
  :: !p_broken[k] ->
     xt = done_tail[k];
     xn = xt - p_done_head[k];
     if
     :: xn > DCAP -> break_conn(k)
     :: xn > 0 && xn <= DCAP ->
        xpos = p_done_head[k];
        xbad = 0;
        do
        :: xpos != xt && !xbad ->
           xcc = done[D(k, xpos)];
           if
#ifndef MUTANT_NO_MARK
           :: xcc >= NCHUNK || !marked(k, xcc) -> break_conn(k); xbad = 1
#else
           /* Mutant: the index is checked, the mark is not. */
           :: xcc >= NCHUNK -> break_conn(k); xbad = 1
#endif
           :: else ->
              /* (c) accepted only for a chunk in flight on k: released by
               * its subscriber and not collected yet, or taken, or queued
               * (a release of those looks like an honest one). */
              queued(k, xcc);
              assert(g_dead[k] || (g_pend[k] & BIT(xcc)) != 0 || (g_own[k] & BIT(xcc)) != 0 || xqb); /* (c) a completion accepted for a chunk not in flight */
              xqb = 0;
              g_pend[k] = g_pend[k] & (255 ^ BIT(xcc));
              if
              :: marked(k, xcc) -> unmark(k, xcc)
              :: else -> skip /* MUTANT_NO_MARK only */
              fi;
              pool_unref(xcc);
              done[D(k, xpos)] = 0; /* canonical form (not in the C): read no more */
              xpos++
           fi
        :: else -> break
        od;
        if
        :: !xbad -> p_done_head[k] = xt; done_head[k] = xt
        :: else -> skip
        fi
     :: else -> skip
     fi
  :: else -> skip
  fi;
  xt = 0; xn = 0; xpos = 0; xcc = 0; xbad = 0
}

/* collect_all. One step: the connections' rings are disjoint, so reading
 * them back to back commutes with what each subscriber does to its own. */
inline collect_all() {
  for (xid : 0 .. NSUB - 1) {
    if
    :: p_bound[xid] -> collect(xid)
    :: else -> skip
    fi
  }
  xid = 0
}

/* ---- publisher.c deliver: the submission ring ---------------------------- */

/* The put (deliver's tail): shadow, shmbus__ring_put (one store-release of
 * the slot word), tail, mark, reference. */
inline put(k, c, sq) {
  assert(!marked(k, c)); /* (c) in flight twice on one connection (marks are bits) */
  p_shadow[S(k, p_tail[k])] = c;
  slot_tag[S(k, p_tail[k])] = p_tail[k] + 1;
  slot_chunk[S(k, p_tail[k])] = c;
  g_slot_seq[S(k, p_tail[k])] = (g_dead[k] -> 0 : sq); /* what (d) expects */
  p_tail[k]++;
  mark(k, c);
  pool_ref(c)
}

/* update_connections, bind, unbind, history_replay. One step: the
 * generation and each slot word are loaded once; a subscriber's ready or a
 * reap between those loads only makes the next call look again. bind
 * resets the connection, replays the history, then stores sub_id with
 * release: the subscriber touches nothing before it sees sub_id. */
inline update_connections() {
  if
  :: sub_gen != p_gen ->
     p_gen = sub_gen;
     for (xid : 0 .. NSUB - 1) {
       if
       :: p_bound[xid] && !slot_ready[xid] ->
          /* unbind */
#ifdef MUTANT_RECLAIM_TWICE
          /* Mutant: the queued chunks are given back from the ring as
           * well as by their marks. */
          for (xqp : head[xid] .. p_tail[xid]) {
            if
            :: xqp < p_tail[xid] -> pool_unref(p_shadow[S(xid, xqp)])
            :: else -> skip
            fi
          }
          xqp = 0;
#endif
#ifndef MUTANT_NO_RECLAIM
          reclaim_all(xid);
#endif
          conn_bound[xid] = 0;
          p_bound[xid] = 0;
          p_broken[xid] = 0;
          /* Canonical form (not in the C, where bind resets them): no later
           * subscriber takes the slot in the model, nobody reads these. */
          head[xid] = 0; done_tail[xid] = 0; done_head[xid] = 0; conn_lost[xid] = 0;
          for (xqp : 0 .. CAP - 1) {
            slot_tag[xid * CAP + xqp] = 0; slot_chunk[xid * CAP + xqp] = 0;
            p_shadow[xid * CAP + xqp] = 0; g_slot_seq[xid * CAP + xqp] = 0
          }
          for (xqp : 0 .. DCAP - 1) { done[xid * DCAP + xqp] = 0 }
          xqp = 0;
          p_tail[xid] = 0; p_head_seen[xid] = 0; p_done_head[xid] = 0; p_lost[xid] = 0
       :: !p_bound[xid] && slot_ready[xid] ->
          /* bind: the words are 0 already (never bound before in the model) */
          p_tail[xid] = 0; p_head_seen[xid] = 0; p_done_head[xid] = 0; p_lost[xid] = 0;
          p_broken[xid] = 0;
          p_bound[xid] = 1;
          /* history_replay: up to DEPTH of the newest; deliver to a fresh
           * connection always has room and is below the in-flight limit */
          xrn = p_hist_len - (p_hist_len < DEPTH -> p_hist_len : DEPTH);
          do
          :: xrn < p_hist_len ->
             xre = p_hist[(p_hist_start + xrn) % HIST];
             g_bal[xid]++;
             put(xid, xre, chunk_seq[xre]);
             xrn++
          :: else -> break
          od;
          xrn = 0; xre = 0;
          conn_bound[xid] = 1 /* sub_id (store-release) */
       :: else -> skip
       fi
     }
     xid = 0
  :: else -> skip
  fi
}

/* ---- the publisher ------------------------------------------------------ */

/* One step per iteration of the outer loop: the inner loop runs phases
 * until one ends the step (yld): after the head load of a full queue
 * (the eviction's CAS races with the subscriber's take), after a failed
 * CAS, at the end of a publish, and before the MUTANT_ORDER header. */
proctype Pub() {
  byte c, sq, dk, hh, tries, ph, ret, k;
  bit yld, evicted;
  do
  :: atomic {
       (ph != PH_END && ph != PH_WAIT) ||
       (ph == PH_WAIT && (fin[0] || reaped[0]) && (fin[NSUB - 1] || reaped[NSUB - 1])) ->
       yld = 0;
       do
       :: yld -> break
       :: !yld && ph == PH_LOAN ->
          if
          :: p_seq == NPUB -> pub_done = 1; ret = PH_FINAL1; ph = PH_UPD
          :: else ->
             /* shmbus_publisher_loan: a free chunk, else collect_all first */
             assert(p_loans < LOANS); /* model: one loan at a time */
             ret = PH_GET;
             ph = (free_count == 0 -> PH_COLL : PH_GET)
          fi
       :: !yld && ph == PH_GET ->
          assert(free_count > 0); /* (a) a loan failed: the pool ran out (sized for the worst case) */
          free_count--;           /* shmbus__pool_get */
          c = free_stack[free_count];
          free_stack[free_count] = 0; /* canonical form: garbage above the top */
          assert(refs[c] == 0); /* (a) a free chunk with references */
          refs[c] = 1;
          check_unused(c);        /* (a) */
          p_loans++;
          ret = PH_HDR; ph = PH_UPD /* publish_chunk: update_connections first */
       :: !yld && ph == PH_HDR ->
          sq = p_seq;
#ifndef MUTANT_ORDER
          chunk_seq[c] = sq;      /* publish_chunk: the header (relaxed stores) */
#endif
          dk = 0; ph = PH_NEXT
       :: !yld && ph == PH_NEXT ->
          /* publish_chunk's loop over the served connections: deliver */
          if
          :: dk == NSUB -> ph = PH_FIN
          :: dk < NSUB && p_bound[dk] && !p_broken[dk] ->
             g_bal[dk] = (g_dead[dk] -> 0 : g_bal[dk] + 1);
             if
             :: p_tail[dk] - p_head_seen[dk] >= DEPTH -> tries = 0; ph = PH_HEAD /* make_room */
             :: else -> ph = PH_REST
             fi
          :: else -> dk++
          fi
       :: !yld && ph == PH_HEAD ->
          /* make_room's loop: load_head (shmbus__ring_head, acquire) and its
           * checks; room: deliver; else evict, in the next step */
          if
          :: tries == 4 -> break_conn(dk); dk++; ph = PH_NEXT
          :: else ->
             tries++;
             hh = head[dk];
             if
             :: hh < p_head_seen[dk] || hh > p_tail[dk] || p_tail[dk] - hh > DEPTH ->
                break_conn(dk); dk++; ph = PH_NEXT
             :: else ->
                p_head_seen[dk] = hh;
                if
                :: p_tail[dk] - hh < DEPTH -> ph = PH_REST
                :: else -> ph = PH_CAS; yld = 1
                fi
             fi
          fi
       :: !yld && ph == PH_CAS ->
          /* make_room: count the loss, then shmbus__ring_evict */
          count_lost(dk);
#ifndef MUTANT_EVICT_NO_CHECK
          if
          :: head[dk] == hh -> head[dk] = hh + 1; evicted = 1 /* CAS hh -> hh + 1 */
          :: else ->           /* the subscriber took it first: not lost; again */
             p_lost[dk]--; conn_lost[dk] = p_lost[dk]; ph = PH_HEAD; yld = 1
          fi;
#else
          /* Mutant: a plain store of the head loaded by the step before:
           * no compare-and-swap, so no check that the subscriber did not
           * take the entry meanwhile. */
          head[dk] = hh + 1; evicted = 1;
#endif
          if
          :: evicted ->
             evicted = 0;
             xev = p_shadow[S(dk, hh)];
             p_head_seen[dk] = hh + 1;
             if
#ifndef MUTANT_EVICT_NO_MARK
             :: !marked(dk, xev) -> break_conn(dk); dk++; ph = PH_NEXT /* released untaken */
             :: else -> unmark(dk, xev); pool_unref(xev); ph = PH_REST
#else
             /* Mutant: the evicted chunk is dropped without its mark checked. */
             :: marked(dk, xev) -> unmark(dk, xev); pool_unref(xev); ph = PH_REST
             :: else -> pool_unref(xev); ph = PH_REST
#endif
             fi;
             xev = 0
          :: else -> skip
          fi
       :: !yld && ph == PH_REST ->
          /* deliver once there is room: the in-flight limit, with a collect
           * when it is reached (one step with the put: the collect reads
           * only this connection's completion ring and the put writes only
           * its submission ring), then the put */
          if
          :: p_inflight[dk] >= LIMIT ->
             collect(dk);
             if
             :: p_broken[dk] -> skip
             :: !p_broken[dk] && p_inflight[dk] >= LIMIT -> count_lost(dk) /* holds too much */
             :: else -> put(dk, c, sq)
             fi
          :: else -> put(dk, c, sq)
          fi;
          dk++; ph = PH_NEXT
       :: !yld && ph == PH_FIN ->
          p_seq++;
          /* history_push */
          if
          :: p_hist_len == HIST ->
             pool_unref(p_hist[p_hist_start]);
             p_hist_start = (p_hist_start + 1) % HIST;
             p_hist_len--
          :: else -> skip
          fi;
          p_hist[(p_hist_start + p_hist_len) % HIST] = c;
          p_hist_len++;
#ifndef MUTANT_NO_HIST_REF
          pool_ref(c);
#endif
          /* end_loan */
          p_loans--;
          pool_unref(c);
          dk = 0; tries = 0; hh = 0; yld = 1;
#ifdef MUTANT_ORDER
          ph = PH_LATE
#else
          c = 0; sq = 0; ph = PH_AHEAD
#endif
       :: !yld && ph == PH_LATE ->
          /* Mutant: the slot words were stored without release, so the
           * header's stores become visible after them. */
          chunk_seq[c] = sq;
          c = 0; sq = 0; ph = PH_AHEAD; yld = 1
       :: !yld && ph == PH_AHEAD ->
          /* look_ahead: for each served connection, one step: the head load
           * of a queue that looks full (load_head's checks), then the
           * collect of one at the in-flight limit */
          if
          :: dk == NSUB -> dk = 0; ph = PH_LOAN
          :: dk < NSUB && p_bound[dk] && !p_broken[dk] ->
             if
             :: p_tail[dk] - p_head_seen[dk] >= DEPTH ->
                hh = head[dk];
                if
                :: hh < p_head_seen[dk] || hh > p_tail[dk] || p_tail[dk] - hh > DEPTH ->
                   break_conn(dk)
                :: else -> p_head_seen[dk] = hh
                fi;
                hh = 0
             :: else -> skip
             fi;
             if
             :: !p_broken[dk] && p_inflight[dk] >= LIMIT -> collect(dk)
             :: else -> skip
             fi;
             dk++; yld = 1
          :: else -> dk++
          fi
       :: !yld && ph == PH_UPD -> update_connections(); ph = ret
       :: !yld && ph == PH_COLL -> collect_all(); ph = ret
       :: !yld && ph == PH_FINAL1 -> ret = PH_FINAL2; ph = PH_COLL
       :: !yld && ph == PH_FINAL2 -> pub_final = 1; ph = PH_WAIT; yld = 1
       :: !yld && ph == PH_WAIT -> ret = PH_CHK1; ph = PH_UPD /* every subscriber is done */
       :: !yld && ph == PH_CHK1 -> ret = PH_CHECK; ph = PH_COLL
       :: !yld && ph == PH_CHECK ->
          /* End state: every reference is accounted for. */
          for (k : 0 .. NSUB - 1) {
            if
            :: !p_bound[k] || p_broken[k] ->
               assert(p_marks[k] == 0 && p_inflight[k] == 0) /* (c) end: a closed or broken connection not reclaimed */
            :: else -> skip
            fi;
            if
            :: fin[k] && !g_buggy[k] -> assert(p_marks[k] == 0) /* (c) end: a drained subscriber's chunk still in flight */
            :: else -> skip
            fi
          }
          xn = 0;
          for (c : 0 .. NCHUNK - 1) {
            xt = 0;
            for (k : 0 .. HIST - 1) {
              if
              :: k < p_hist_len && p_hist[(p_hist_start + k) % HIST] == c -> xt++
              :: else -> skip
              fi
            }
            for (k : 0 .. NSUB - 1) {
              if
              :: p_bound[k] && !p_broken[k] && marked(k, c) -> xt++
              :: else -> skip
              fi
            }
            assert(refs[c] == xt); /* (c) end: a leaked or lost reference */
            xn = xn + (refs[c] == 0 -> 1 : 0)
          }
          assert(free_count == xn && p_loans == 0); /* (c) end: free stack and counts disagree */
          for (c : 0 .. NCHUNK - 1) {
            assert(c >= free_count || refs[free_stack[c]] == 0) /* (c) end: a used chunk on the free stack */
          }
          xn = 0; xt = 0; c = 0; k = 0;
          ph = PH_END; yld = 1
       od
     }
  :: ph == PH_END -> break
  od
}

/* ---- a subscriber ------------------------------------------------------- */

/* read_chunk (the header, loaded once) and hold (the held table). */
inline read_hold() {
  seq = chunk_seq[c];
  /* (d) the sample it was told: the entry put at position h (its slot still
   * tagged h + 1), with the payload published with it */
  assert(g_buggy[k] || (slot_tag[S(k, h)] == h + 1 && c == slot_chunk[S(k, h)] && seq == g_slot_seq[S(k, h)])); /* (d) not the sample it was told */
  /* (b) each sample at most once: in strictly increasing order */
  assert(g_buggy[k] || last_seq == NONE || seq > last_seq); /* (b) a sample taken twice or out of order */
  g_bal[k]--;
  last_seq = seq;
  hfree_n--;
  i = hfree[hfree_n];
  held_on[i] = 1; held_chunk[i] = c; held_seq[i] = seq
}

/* shmbus_subscriber_take: shmbus__ring_pop, then read_chunk and hold. Two
 * steps: the loads (head, relaxed; the slot at head, acquire), then the
 * compare-and-swap of head, which the eviction races with. The loads are
 * one step: a slot rewritten between them gives the C a tag mismatch and
 * a head reload, which this step gives at once. The header is read in the
 * CAS's step: the chunk is the subscriber's from the CAS on, so nothing
 * writes it in between in the correct protocol (MUTANT_ORDER writes it
 * late: this step then reads the stale header). The C gives up after 64
 * lost races (a spurious EMPTY); the publisher's retries bound them here.
 * ok = 0: EMPTY. */
inline sub_take() {
  ok = 0; isempty = 0;
  do
  :: atomic {
       h = head[k];
       tag = slot_tag[S(k, h)];
#ifndef MUTANT_ORDER_POP
       c = slot_chunk[S(k, h)];
#endif
       isempty = (tag != h + 1)
     };
     if
     :: isempty -> break
     :: else ->
        atomic {
          if
          :: head[k] == h ->           /* CAS head: h -> h + 1 */
             head[k] = h + 1; ok = 1;
             g_own[k] = g_own[k] | BIT(slot_chunk[S(k, h)]);
#ifndef MUTANT_ORDER_POP
             read_hold()
#else
             skip
#endif
          :: else -> skip              /* lost the race: look again */
          fi
        };
        if
        :: ok -> break
        :: else -> skip
        fi
     fi
  od;
#ifdef MUTANT_ORDER_POP
  /* Mutant: the chunk index is loaded from the slot only after head moved
   * past it (the tag was checked before): the publisher may have put a
   * later sample there meanwhile. */
  if
  :: ok -> atomic { c = slot_chunk[S(k, h)]; read_hold() }
  :: else -> skip
  fi;
#endif
  h = 0; tag = 0; c = 0; seq = 0; i = 0; isempty = 0
}

/* complete -> shmbus__done_push: the entry (relaxed), then done_tail
 * (release). One step: the publisher reads no entry at or above done_tail.
 * A ring that looks full is looked at again (done_head); a full one drops
 * the completion, which never happens to an honest subscriber (asserted). */
inline done_push(fc, legit) {
  if
  :: dtail - dhead_seen >= DCAP -> dhead_seen = done_head[k]
  :: else -> skip
  fi;
  if
  :: dtail - dhead_seen >= DCAP -> assert(g_buggy[k]) /* (c) an honest completion dropped: ring full */
  :: else ->
     done[D(k, dtail)] = fc;
     dtail++;
     done_tail[k] = dtail;
     if
     :: legit -> g_own[k] = g_own[k] & (255 ^ BIT(fc)); g_pend[k] = g_pend[k] | BIT(fc)
     :: else -> skip
     fi
  fi
}

inline unhold() {
#ifdef FORGE
  last_rel = (forged -> last_rel : c); /* what a double release pushes */
#endif
#ifdef STALE
  st_h = i; st_c = c; st_seq = held_seq[i]; st_ok = 1; /* the user keeps a copy */
#endif
  held_on[i] = 0;
  hfree[hfree_n] = i;
  hfree_n++;
  c = 0; i = 0
}

/* shmbus_subscriber_release of a sample held in held[i] (its handle passes
 * the held table's check): the user's reads of the payload come before;
 * complete() pushes the chunk. */
inline sub_release() {
  atomic {
    if
    :: held_on[0] -> i = 0
#if HELD > 1
    :: held_on[1] -> i = 1
#endif
    fi;
    c = held_chunk[i];
#ifndef MUTANT_ORDER_DONE
    /* the user's reads of the payload, before the release: (d), and (a)
     * as the reader sees it (not reused while held) */
    assert(g_buggy[k] || chunk_seq[c] == held_seq[i]); /* (d) the payload changed while held */
    done_push(c, 1);
    unhold()
#else
    done_push(c, 1)
#endif
  };
#ifdef MUTANT_ORDER_DONE
  /* Mutant: done_tail stored without release, so the payload loads that
   * precede it in the program may be satisfied after it. */
  atomic {
    assert(g_buggy[k] || chunk_seq[c] == held_seq[i]); /* (d) the payload changed while held */
    unhold()
  }
#endif
  skip
}

proctype Sub(byte k) {
  byte h, tag, c, seq, i;
  byte dtail, dhead_seen;      /* the source's done_tail and done_head_seen */
  byte last_seq = NONE;
  byte hfree[HELD], hfree_n;   /* held_free stack */
  bit held_on[HELD];           /* held[h].source != UINT32_MAX */
  byte held_chunk[HELD];       /* held[h].chunk */
  byte held_seq[HELD];         /* held[h].sequence, = the user's sample.sequence */
  bit ok, isempty, drain;
#ifdef FORGE
  byte fc, last_rel = NONE;
  bit forged;
#endif
#ifdef STALE
  byte st_h, st_c, st_seq;
  bit st_ok, st_used;
#endif
  atomic {
    for (i : 0 .. HELD - 1) { hfree[i] = HELD - 1 - i } /* shmbus_subscriber_open */
    hfree_n = HELD; i = 0
  };
  {
    if
    :: atomic { !pub_done -> slot_ready[k] = 1; sub_gen++ } /* shmbus__service_ready */
       conn_bound[k];    /* source_usable: sub_id names us (load-acquire) */
       /* The user: takes and releases in any order (at most HELD held),
        * until the publisher is done; then drains (takes and releases
        * until the queue is empty). */
       do
       :: !drain && pub_final -> drain = 1
       :: hfree_n > 0 && (!drain || hfree_n == HELD) ->
          sub_take();
          if
          :: drain && !ok -> break
          :: else -> skip
          fi
       :: hfree_n < HELD -> sub_release()
#ifdef FORGE
       :: !drain && k == FORGER && !forged ->
          /* A buggy subscriber pushes one forged completion, of one of
           * three kinds: a double release (the chunk it released last), a
           * release of the sample queued at its head that it never took,
           * or a chunk it never had (the newest history chunk, which the
           * other subscriber and the history may hold). */
          atomic {
            forged = 1; g_buggy[k] = 1;
            if
            :: last_rel != NONE -> fc = last_rel
            :: fc = slot_chunk[S(k, head[k])]
            :: p_hist_len > 0 -> fc = p_hist[(p_hist_start + p_hist_len - 1) % HIST]
            fi;
            done_push(fc, 0);
            fc = 0
          }
#endif
#ifdef STALE
       :: !drain && k == 0 && st_ok && !st_used ->
          /* The user releases a stale copy of a sample it released before.
           * shmbus_subscriber_release checks the handle (held index and
           * chunk), the sample's sequence and publisher id against what
           * hold recorded (one publisher here), and the payload pointer
           * (the chunk's). */
          atomic {
            st_used = 1;
            if
#ifndef MUTANT_HANDLE_NO_SEQ
            :: held_on[st_h] && held_chunk[st_h] == st_c && held_seq[st_h] == st_seq ->
#else
            /* Mutant (the C before 67c319a): the handle and the payload
             * only, which a newer sample in the same held entry and the
             * same chunk shares (both free lists are LIFO). */
            :: held_on[st_h] && held_chunk[st_h] == st_c ->
#endif
               assert(held_seq[st_h] == st_seq) /* (c) a stale copy released another sample */
            :: else -> skip /* NOT_HELD: nothing happens */
            fi
          }
#endif
       od;
       /* (b) every sample offered to it was taken or counted lost */
       assert(g_buggy[k] || g_bal[k] == conn_lost[k]) /* (b) end: taken + lost != offered */
    :: pub_done -> skip /* opens after the last publish: never connected */
    fi;
    fin[k] = 1
  } unless {
    atomic {
      kill[k] -> g_dead[k] = 1;
      /* canonical form: a dead process's memory is read no more */
      g_own[k] = 0; g_pend[k] = 0; g_bal[k] = 0;
      for (i : 0 .. CAP - 1) { g_slot_seq[k * CAP + i] = 0 }
      for (i : 0 .. HELD - 1) { hfree[i] = 0; held_on[i] = 0; held_chunk[i] = 0; held_seq[i] = 0 }
      h = 0; tag = 0; c = 0; seq = 0; i = 0; dtail = 0; dhead_seen = 0; last_seq = 0;
      hfree_n = 0; ok = 0; isempty = 0; drain = 0
#ifdef FORGE
      ; fc = 0; forged = 0; last_rel = 0
#endif
#ifdef STALE
      ; st_h = 0; st_c = 0; st_seq = 0; st_ok = 0; st_used = 0
#endif
    }
  }
}

/* The death of subscriber DYING at any point (between any two of its
 * steps), then the reap of its slot by whoever notices (a sweep, or the
 * publisher's suspect()): shmbus__service_reap clears the slot word, then
 * bumps sub_generation. */
proctype Reaper() {
#ifndef NODEATH
  if
  :: atomic { !fin[DYING] -> kill[DYING] = 1 };
     g_dead[DYING];
     atomic { slot_ready[DYING] = 0; sub_gen++; reaped[DYING] = 1 }
  :: skip
  fi
#else
  skip
#endif
}

init {
  atomic {
    assert(NCHUNK == NSUB * (DEPTH + HELD) + HIST + LOANS && NCHUNK <= 8); /* model: configuration */
    assert(NSUB >= 1 && NSUB <= 2 && NPUB < NONE); /* model: configuration */
    /* shmbus__pool_init: chunk 0 on top */
    for (xri : 0 .. NCHUNK - 1) { free_stack[xri] = NCHUNK - 1 - xri; chunk_seq[xri] = NONE }
    xri = 0;
    free_count = NCHUNK;
    run Pub();
    run Sub(0);
#if NSUB > 1
    run Sub(1);
#endif
    run Reaper()
  }
}
