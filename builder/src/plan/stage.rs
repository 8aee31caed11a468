//! Planning stage by stage: ARG scoping, ENV tracking, expansion and dependency edges.

use super::scope::Scope;
use super::{graph, unconsumed, BaseImages, Plan, PlanError, PlanErrorKind, PlanRequest, Platform, PROXY_ARGS};
use crate::dockerfile::instruction::{ArgDecl, Expander, Instruction, Located};
use crate::dockerfile::shell::ShellLexer;
use crate::dockerfile::{Location, Warning};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Base {
    Scratch,
    Image { reference: String },
    Stage { index: usize },
}

/// One build stage.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    pub platform: Platform,
    /// The FROM instruction's place in the file.
    pub location: Location,
    /// The instructions after FROM, expanded.
    pub steps: Vec<Step>,
    /// Stages this one reads from (its base, `COPY --from`, `RUN --mount=from=`).
    pub depends_on: BTreeSet<usize>,
    /// Images (not stages) read by `COPY --from` or `RUN --mount=from=`.
    pub images: BTreeSet<String>,
    /// Whether the target needs this stage; unneeded stages are skipped.
    pub needed: bool,
    /// ENV and ARG values at the end of the stage (what a stage built `FROM` this one
    /// starts with: BuildKit's build state carries both).
    #[serde(skip)]
    pub(super) final_scope: Scope,
    /// The stage's own ONBUILD triggers (what a stage built `FROM` this one runs first).
    #[serde(skip)]
    pub(super) final_onbuild: Vec<String>,
}

impl Stage {
    /// The name, or the index for unnamed stages.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// One instruction of a stage, after expansion.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub instruction: Instruction,
    pub location: Location,
    /// The source line as written.
    pub original: String,
    /// The build args this step can see and that affect it: for RUN every ARG in scope
    /// (they are its environment); for other instructions the ARGs its words used.
    pub args: BTreeMap<String, String>,
}

/// Walks the instructions once, keeping scopes.
pub(super) struct Planner<'a> {
    lexer: ShellLexer,
    request: &'a PlanRequest,
    bases: &'a dyn BaseImages,
    /// Automatic platform args plus global ARGs.
    global: BTreeMap<String, String>,
    /// Global ARGs declared before the first FROM (only these are re-declarable without a value).
    declared_global: BTreeSet<String>,
    consumed: BTreeSet<String>,
    stages: Vec<Stage>,
    stage_names: BTreeMap<String, usize>,
}

impl<'a> Planner<'a> {
    pub(super) fn new(escape: char, request: &'a PlanRequest, bases: &'a dyn BaseImages) -> Self {
        let global = request
            .platform
            .build_args("TARGET")
            .into_iter()
            .chain(request.build_platform.build_args("BUILD"))
            .collect();
        Self {
            lexer: ShellLexer::new(escape),
            request,
            bases,
            global,
            declared_global: BTreeSet::new(),
            consumed: BTreeSet::new(),
            stages: Vec::new(),
            stage_names: BTreeMap::new(),
        }
    }

    /// ARGs before the first FROM: usable in FROM lines and re-declarable in stages.
    pub(super) fn global_args(&mut self, located: &[Located]) -> Result<(), PlanError> {
        for l in located {
            let Instruction::Arg { args } = &l.instruction else { continue };
            for decl in args {
                let scope = Scope { args: self.global.clone(), ..Scope::default() };
                let value = self.arg_value(decl, &scope).map_err(|kind| at(l.location, kind))?;
                self.declared_global.insert(decl.name.clone());
                match value {
                    Some(v) => self.global.insert(decl.name.clone(), v),
                    None => self.global.remove(&decl.name),
                };
            }
        }
        Ok(())
    }

    /// Splits the rest of the file at each FROM and plans every stage.
    pub(super) fn stages(&mut self, located: &[Located]) -> Result<(), PlanError> {
        let mut start = 0;
        for end in 1..=located.len() {
            if end == located.len() || located[end].instruction.keyword() == "FROM" {
                self.stage(&located[start..end])?;
                start = end;
            }
        }
        Ok(())
    }

    fn stage(&mut self, located: &[Located]) -> Result<(), PlanError> {
        let Some((from_l, rest)) = located.split_first() else { return Ok(()) };
        let Instruction::From(from) = &from_l.instruction else { return Ok(()) };
        let index = self.stages.len();
        let global_scope = Scope { args: self.global.clone(), ..Scope::default() };
        let mut ex = Expander::new(&self.lexer, &global_scope);
        let from = from.expand(&mut ex).map_err(|k| at(from_l.location, k.into()))?;
        let platform = match &from.platform {
            Some(p) => p.parse().map_err(|e: super::PlatformError| at(from_l.location, e.into()))?,
            None => self.request.platform.clone(),
        };
        let (base, inherited_scope) = self.base(&from.image, &platform);
        let mut depends_on = BTreeSet::new();
        if let Base::Stage { index } = base {
            depends_on.insert(index);
        }
        if let Some(name) = &from.name {
            if self.stage_names.insert(name.clone(), index).is_some() {
                return Err(at(from_l.location, PlanErrorKind::DuplicateStage { name: name.clone() }));
            }
        }
        let mut stage = Stage {
            index,
            name: from.name.clone(),
            base,
            platform,
            location: from_l.location,
            steps: Vec::new(),
            depends_on,
            images: BTreeSet::new(),
            needed: false,
            final_scope: Scope::default(),
            final_onbuild: Vec::new(),
        };
        let inherited = match &stage.base {
            Base::Image { reference } => self.bases.onbuild(reference, &stage.platform).unwrap_or_default(),
            Base::Stage { index } => self.stages.get(*index).map(|s| s.final_onbuild.clone()).unwrap_or_default(),
            Base::Scratch => Vec::new(),
        };
        let triggers = super::onbuild::triggers(&inherited, from_l.location)?;
        let mut scope = inherited_scope;
        for l in triggers.iter().chain(rest) {
            let step = self.step(l, &mut scope).map_err(|kind| at(l.location, kind))?;
            stage.steps.push(step);
        }
        stage.final_scope = scope;
        stage.final_onbuild = rest
            .iter()
            .filter_map(|l| match &l.instruction {
                Instruction::Onbuild { source, .. } => Some(source.clone()),
                _ => None,
            })
            .collect();
        self.stages.push(stage);
        Ok(())
    }

    /// The base of a stage and the scope it starts with: a stage base passes on its ENV and
    /// its ARG values (BuildKit's `FROM <stage>` continues that stage's build state, whose
    /// environment holds both), an image its config's ENV, scratch BuildKit's default PATH.
    fn base(&self, image: &str, platform: &Platform) -> (Base, Scope) {
        if let Some(&index) = self.stage_names.get(&image.to_ascii_lowercase()) {
            let scope = self.stages.get(index).map(|s| s.final_scope.clone()).unwrap_or_default();
            return (Base::Stage { index }, scope);
        }
        if image.eq_ignore_ascii_case("scratch") {
            let path = if platform.os == "linux" {
                vec![("PATH".to_string(), crate::sandbox::DEFAULT_PATH.to_string())]
            } else {
                Vec::new()
            };
            return (Base::Scratch, Scope::with_env(path));
        }
        let env = self.bases.env(image, platform).unwrap_or_default();
        (Base::Image { reference: image.to_string() }, Scope::with_env(env))
    }

    fn step(&mut self, l: &Located, scope: &mut Scope) -> Result<Step, PlanErrorKind> {
        if let Instruction::Arg { args: decls } = &l.instruction {
            return self.declare(l, decls, scope);
        }
        let mut ex = Expander::new(&self.lexer, scope);
        let instruction = l.instruction.expand(&mut ex)?;
        let mut args = pick(&scope.args, &ex.used);
        match &instruction {
            Instruction::Env { vars } => {
                for kv in vars {
                    scope.set_env(kv.key.clone(), kv.value.clone());
                }
            }
            Instruction::Run(_) => args = scope.run_args(),
            _ => {}
        }
        Ok(Step { instruction, location: l.location, original: l.original.clone(), args })
    }

    /// An ARG step: each name gets its value in order; the step shows the values it set.
    fn declare(&mut self, l: &Located, decls: &[ArgDecl], scope: &mut Scope) -> Result<Step, PlanErrorKind> {
        let mut resolved = Vec::with_capacity(decls.len());
        let mut args = BTreeMap::new();
        for decl in decls {
            // BuildKit expands the name too (`ARG ${PREFIX}_NAME=v`).
            let expanded;
            let decl = if decl.name.contains('$') {
                let name = Expander::new(&self.lexer, scope).word(&decl.name, "ARG name")?;
                expanded = ArgDecl { name, default: decl.default.clone() };
                &expanded
            } else {
                decl
            };
            let value = self.arg_value(decl, scope)?;
            match &value {
                Some(v) => {
                    scope.set_arg(decl.name.clone(), v.clone());
                    args.insert(decl.name.clone(), v.clone());
                }
                None => {
                    scope.args.remove(&decl.name);
                }
            }
            resolved.push(ArgDecl { name: decl.name.clone(), default: value });
        }
        let instruction = Instruction::Arg { args: resolved };
        Ok(Step { instruction, location: l.location, original: l.original.clone(), args })
    }

    /// An ARG's value: `--build-arg`, else its default (expanded in `scope`), else the global
    /// value of the same name (for a re-declared global or an automatic platform ARG).
    fn arg_value(&mut self, decl: &ArgDecl, scope: &Scope) -> Result<Option<String>, PlanErrorKind> {
        self.consumed.insert(decl.name.clone());
        if let Some(v) = self.request.build_args.get(&decl.name) {
            return Ok(Some(v.clone()));
        }
        if let Some(default) = &decl.default {
            let mut ex = Expander::new(&self.lexer, scope);
            return Ok(Some(ex.word(default, "ARG default")?));
        }
        let automatic = decl.name.starts_with("TARGET") || decl.name.starts_with("BUILD");
        if self.declared_global.contains(&decl.name) || automatic {
            return Ok(self.global.get(&decl.name).cloned());
        }
        Ok(None)
    }

    /// Links `--from` references, checks the target and cycles, and marks needed stages.
    pub(super) fn finish(mut self, mut warnings: Vec<Warning>) -> Result<Plan, PlanError> {
        self.link_references()?;
        let target = match &self.request.target {
            None => self.stages.len().saturating_sub(1),
            Some(name) => *self.stage_names.get(&name.to_ascii_lowercase()).ok_or_else(|| PlanError {
                location: None,
                kind: PlanErrorKind::UnknownTarget { name: name.clone() },
            })?,
        };
        graph::check_cycles(&self.stages)
            .map_err(|(i, kind)| PlanError { location: self.stages.get(i).map(|s| s.location), kind })?;
        for i in graph::needed_by(&self.stages, target) {
            if let Some(stage) = self.stages.get_mut(i) {
                stage.needed = true;
            }
        }
        for name in unconsumed(self.request, &self.consumed) {
            warnings.push(Warning { line: 0, message: format!("build-arg {name:?} was not consumed by any ARG") });
        }
        let proxy_args = self
            .request
            .build_args
            .iter()
            .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Plan { stages: self.stages, target, global_args: self.global, proxy_args, warnings })
    }

    fn link_references(&mut self) -> Result<(), PlanError> {
        let count = self.stages.len();
        for i in 0..count {
            let refs: Vec<(Location, String)> = self.stages[i]
                .steps
                .iter()
                .flat_map(|s| from_references(&s.instruction).into_iter().map(move |r| (s.location, r)))
                .collect();
            for (location, reference) in refs {
                match self.resolve_reference(&reference, count) {
                    Ok(Some(index)) => self.stages[i].depends_on.insert(index),
                    Ok(None) => self.stages[i].images.insert(reference),
                    Err(kind) => return Err(at(location, kind)),
                };
            }
        }
        Ok(())
    }

    fn resolve_reference(&self, reference: &str, count: usize) -> Result<Option<usize>, PlanErrorKind> {
        if let Ok(index) = reference.parse::<usize>() {
            return if index < count { Ok(Some(index)) } else { Err(PlanErrorKind::StageIndex { index, count }) };
        }
        Ok(self.stage_names.get(&reference.to_ascii_lowercase()).copied())
    }
}

/// `--from` values of an instruction: `COPY --from` and `RUN --mount=from=`.
fn from_references(instruction: &Instruction) -> Vec<String> {
    match instruction {
        Instruction::Copy(c) => c.from.iter().cloned().collect(),
        Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The entries of `args` whose names are in `used`.
fn pick(args: &BTreeMap<String, String>, used: &BTreeSet<String>) -> BTreeMap<String, String> {
    used.iter().filter_map(|k| args.get(k).map(|v| (k.clone(), v.clone()))).collect()
}

fn at(location: Location, kind: PlanErrorKind) -> PlanError {
    PlanError { location: Some(location), kind }
}
