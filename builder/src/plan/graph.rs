//! The stage graph: which stages a stage needs, cycles, and pruning to the target.

use super::{PlanErrorKind, Stage};
use std::collections::BTreeSet;

/// Fails on a dependency cycle, naming the stages on it.
pub(super) fn check_cycles(stages: &[Stage]) -> Result<(), (usize, PlanErrorKind)> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; stages.len()];
    for start in 0..stages.len() {
        let mut path = Vec::new();
        visit(stages, start, &mut state, &mut path)?;
    }
    Ok(())
}

fn visit(stages: &[Stage], i: usize, state: &mut [u8], path: &mut Vec<usize>) -> Result<(), (usize, PlanErrorKind)> {
    match state.get(i).copied() {
        Some(2) | None => return Ok(()),
        Some(1) => {
            let from = path.iter().position(|&p| p == i).unwrap_or(0);
            let names = path[from..].iter().map(|&s| stages[s].display_name()).collect::<Vec<_>>();
            return Err((i, PlanErrorKind::Cycle { stages: names.join(" -> ") }));
        }
        _ => {}
    }
    state[i] = 1;
    path.push(i);
    for &dep in &stages[i].depends_on {
        visit(stages, dep, state, path)?;
    }
    path.pop();
    state[i] = 2;
    Ok(())
}

/// The stages the target needs (itself included).
pub(super) fn needed_by(stages: &[Stage], target: usize) -> BTreeSet<usize> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            if let Some(stage) = stages.get(i) {
                todo.extend(stage.depends_on.iter().copied());
            }
        }
    }
    needed
}
