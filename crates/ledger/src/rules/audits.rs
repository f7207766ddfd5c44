//! Audits: `AuditProof` answers a node's challenges in the open round, `FragmentLost` lets a
//! node report a fragment it no longer holds, and [`end_of_block`] opens rounds and judges them
//! at their deadline. The pure parts (seed, derivation, verification, verdicts, penalties)
//! live in [`crate::audit`].

use crate::{
    audit::{self, AuditProof, AuditRecord, FragmentLost, NodeRound, Outcome, Round},
    objects::{object_key_suffix, ObjectRecord},
    state::{key, Event, State, T_AUDIT, T_AUDIT_OPEN, T_AUDIT_RECORD, T_NODE, T_OBJECT},
    AccountId, NodeId, TxError,
};

/// A checked audit change.
pub(crate) enum Change {
    /// The node's round after these answers.
    Proved {
        node: NodeId,
        round: NodeRound,
        proved: usize,
        failed: usize,
    },
    /// The object after clearing the lost fragment's stored bit, and the node's audit record
    /// charged for the loss.
    Lost {
        object_key: Vec<u8>,
        record: Box<ObjectRecord>,
        audit: AuditRecord,
        lost: FragmentLost,
    },
}

fn operated_by(state: &State, node: &NodeId, signer: &AccountId) -> Result<(), TxError> {
    let n = state.nodes.get(node).ok_or(TxError::UnknownNode)?;
    if n.operator != *signer {
        return Err(TxError::NotNodeOperator);
    }
    Ok(())
}

/// `AuditProof`: the round is open and not past its deadline, the node has challenges, each
/// answered challenge is still open; every leaf is then verified, and a wrong one is recorded
/// as failed (evidence), not refused.
pub(super) fn check_proof(
    state: &State,
    signer: &AccountId,
    proof: &AuditProof,
    height: u64,
) -> Result<Change, TxError> {
    operated_by(state, &proof.node, signer)?;
    let last = state.audit_round.as_ref();
    let Some(round) = last.filter(|r| r.number == proof.round) else {
        return Err(TxError::AuditRoundNotOpen {
            round: proof.round,
            open: last.filter(|r| !r.judged).map(|r| r.number),
        });
    };
    let deadline = round.opened_height + state.audit_params.deadline_blocks;
    if round.judged || height > deadline {
        return Err(TxError::AuditProofLate {
            round: round.number,
            deadline,
        });
    }
    let mut nr = state
        .audit_open
        .get(&proof.node)
        .ok_or(TxError::NotChallenged)?
        .clone();
    let (mut proved, mut failed) = (0, 0);
    for leaf in &proof.leaves {
        let i = usize::from(leaf.challenge);
        let open = nr.outcomes.get(i) == Some(&Outcome::Open);
        let (Some(challenge), true) = (nr.challenges.get(i), open) else {
            return Err(TxError::ChallengeNotOpen {
                index: leaf.challenge,
            });
        };
        nr.outcomes[i] = if audit::verify_leaf(challenge, leaf) {
            proved += 1;
            Outcome::Proved
        } else {
            failed += 1;
            Outcome::Failed
        };
    }
    nr.proof_bytes = nr.proof_bytes.saturating_add(proof.proof_bytes());
    Ok(Change::Proved {
        node: proof.node,
        round: nr,
        proved,
        failed,
    })
}

/// `FragmentLost`: the manifest records the fragment as stored on the reporting node; its
/// stored bit is cleared so repair sees it missing. Challenges already issued for it stand.
pub(super) fn check_lost(
    state: &State,
    signer: &AccountId,
    lost: &FragmentLost,
) -> Result<Change, TxError> {
    operated_by(state, &lost.node, signer)?;
    let object_key = object_key_suffix(&lost.bucket, &lost.key);
    let rec = state
        .objects
        .get(&object_key)
        .ok_or(TxError::NoSuchObject)?;
    let slot = usize::from(lost.fragment);
    let held = rec.manifest.placement.get(slot) == Some(&lost.node)
        && slot < 64
        && rec
            .manifest
            .segments
            .get(lost.segment as usize)
            .is_some_and(|s| s.stored_mask >> slot & 1 == 1);
    if !held {
        return Err(TxError::FragmentNotHeld);
    }
    let mut record = Box::new(rec.clone());
    record.manifest.segments[lost.segment as usize].stored_mask &= !(1u64 << slot);
    let audit = audit::charge_loss(
        &state
            .audit_records
            .get(&lost.node)
            .cloned()
            .unwrap_or_default(),
    );
    Ok(Change::Lost {
        object_key,
        record,
        audit,
        lost: lost.clone(),
    })
}

pub(super) fn apply(state: &mut State, change: Change) -> Event {
    match change {
        Change::Proved {
            node,
            round,
            proved,
            failed,
        } => {
            let number = round.round;
            state.touch(key(T_AUDIT_OPEN, &node));
            state.audit_open.insert(node, round);
            Event::AuditProof {
                node,
                round: number,
                proved,
                failed,
            }
        }
        Change::Lost {
            object_key,
            record,
            audit,
            lost,
        } => {
            state.touch(key(T_OBJECT, &object_key));
            state.objects.insert(object_key, *record);
            state.touch(key(T_AUDIT_RECORD, &lost.node));
            state.audit_records.insert(lost.node, audit);
            Event::FragmentLost {
                node: lost.node,
                bucket: lost.bucket,
                key: lost.key,
                segment: lost.segment,
                fragment: lost.fragment,
            }
        }
    }
}

/// After a block's transactions: judges the open round at its deadline, then opens a new round
/// every `round_blocks` (with the seed from the state root after the previous block).
pub(crate) fn end_of_block(state: &mut State, height: u64, events: &mut Vec<Event>) {
    let params = state.audit_params;
    let due = state
        .audit_round
        .as_ref()
        .is_some_and(|r| !r.judged && height >= r.opened_height + params.deadline_blocks);
    if due {
        judge_round(state, events);
    }
    if height.is_multiple_of(params.round_blocks) {
        if !state.audit_open.is_empty() {
            judge_round(state, events);
        }
        open_round(state, height, events);
    }
}

fn judge_round(state: &mut State, events: &mut Vec<Event>) {
    let params = state.audit_params;
    // Touch before removing: touch records each entry's encoding as it was.
    let nodes: Vec<NodeId> = state.audit_open.keys().copied().collect();
    for node in &nodes {
        state.touch(key(T_AUDIT_OPEN, node));
    }
    let open = std::mem::take(&mut state.audit_open);
    for (node, nr) in open.iter() {
        let verdict = audit::verdict(&nr.outcomes);
        let rec = state.audit_records.get(node).cloned().unwrap_or_default();
        let stake = state.nodes.get(node).map_or(0, |n| n.stake);
        let (after, slashed) = audit::judge(&rec, verdict, stake, nr.proof_bytes, &params);
        if slashed > 0 {
            if let Some(n) = state.nodes.get(node) {
                let mut n = n.clone();
                n.stake -= slashed;
                state.touch(key(T_NODE, node));
                state.nodes.insert(*node, n);
            }
        }
        let became_faulty = after.faulty && !rec.faulty;
        events.push(Event::AuditVerdict {
            node: *node,
            round: nr.round,
            verdict,
            credit: after.credit,
            strikes: after.strikes,
            slashed,
        });
        if became_faulty {
            events.push(Event::NodeFaulty { node: *node });
        }
        state.touch(key(T_AUDIT_RECORD, node));
        state.audit_records.insert(*node, after);
    }
    debug_assert!(state.audit_open.is_empty());
    state.touch(vec![T_AUDIT]);
    if let Some(r) = &mut state.audit_round {
        debug_assert!(open.values().all(|nr| nr.round == r.number));
        r.judged = true;
    }
}

fn open_round(state: &mut State, height: u64, events: &mut Vec<Event>) {
    let number = height / state.audit_params.round_blocks;
    let seed = audit::round_seed(&state.chain_id, number, &state.root);
    let challenges = audit::derive_challenges(state, &seed, state.audit_params.challenges_per_node);
    let nodes = challenges.len();
    for (node, list) in challenges {
        let outcomes = vec![Outcome::Open; list.len()];
        state.touch(key(T_AUDIT_OPEN, &node));
        state.audit_open.insert(
            node,
            NodeRound {
                round: number,
                challenges: list,
                outcomes,
                proof_bytes: 0,
            },
        );
    }
    state.touch(vec![T_AUDIT]);
    state.audit_round = Some(Round {
        number,
        opened_height: height,
        seed,
        judged: false,
    });
    events.push(Event::AuditRoundOpened {
        round: number,
        challenged_nodes: nodes,
    });
}
