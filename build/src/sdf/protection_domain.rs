//! `<protection_domain>` (with its nested children) and `<virtual_machine>`, parsed in Microkit's
//! check order, and the flattening of nested PDs into one list.

use std::collections::HashSet;
use std::path::PathBuf;

use roxmltree::Node;

use super::cspace::{self, RawCapMap};
use super::domains::Domains;
use super::error::{SdfError, SdfErrorKind, SdfResult};
use super::memory_region::RawMap;
use super::model::{Conversion, IrqTrigger};
use super::platform::{
    self, ARM_SMC, BUDGET_DEFAULT, HYPERVISOR, MAX_PD_NESTING, NUM_CORES, PD_DEFAULT_STACK_SIZE,
    PD_MAX_ID, PD_MAX_PRIORITY, PD_MAX_STACK_SIZE, PD_MIN_STACK_SIZE, SMALL_PAGE,
};
use super::xml::{elements, Pos, SdfFile, SignedValue};

/// What a `setvar` symbol is patched with. Microkit keeps one list per PD so that a symbol
/// can be set only once, whatever its kind.
#[derive(Clone, Debug)]
pub(crate) enum SetVarKind {
    Vaddr,
    Size,
    PrefillSize { mr: String },
    Paddr { region: String, pos: Pos },
    Id { id: u64 },
}

/// One `setvar` of a PD, of any kind.
#[derive(Clone, Debug)]
pub(crate) struct RawSetVar {
    pub(crate) symbol: String,
    pub(crate) kind: SetVarKind,
}

/// An `<irq>` as written.
#[derive(Clone, Debug)]
pub(crate) struct RawIrq {
    pub(crate) irq: u64,
    pub(crate) id: u64,
    pub(crate) trigger: IrqTrigger,
    pub(crate) pos: Pos,
}

/// A `<vcpu>` as written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawVcpu {
    pub(crate) id: u64,
    pub(crate) pos: Pos,
}

/// A `<virtual_machine>` as written.
#[derive(Clone, Debug)]
pub(crate) struct RawVm {
    pub(crate) name: String,
    pub(crate) priority: u8,
    pub(crate) budget: u64,
    pub(crate) period: u64,
    pub(crate) vcpus: Vec<RawVcpu>,
    pub(crate) maps: Vec<RawMap>,
    pub(crate) protected: bool,
    /// `conversion` (Frameshift): `Some` exactly when `protected`, `History` by default.
    pub(crate) conversion: Option<Conversion>,
    pub(crate) pos: Pos,
}

/// A `<protection_domain>` as written; `children` is emptied by [`flatten`].
#[derive(Clone, Debug)]
pub(crate) struct RawPd {
    pub(crate) name: String,
    pub(crate) child_id: Option<u64>,
    pub(crate) priority: u8,
    pub(crate) budget: u64,
    pub(crate) period: u64,
    pub(crate) passive: bool,
    pub(crate) stack_size: u64,
    pub(crate) fpu: bool,
    pub(crate) program_image: PathBuf,
    pub(crate) program_image_for_symbols: Option<PathBuf>,
    pub(crate) maps: Vec<RawMap>,
    pub(crate) irqs: Vec<RawIrq>,
    pub(crate) setvars: SetVars,
    pub(crate) cap_maps: Vec<RawCapMap>,
    /// Position of the `<cspace>` child, if any (Frameshift does not support it).
    pub(crate) cspace_pos: Option<Pos>,
    pub(crate) virtual_machine: Option<RawVm>,
    pub(crate) children: Vec<RawPd>,
    /// Index of the parent in the flattened list.
    pub(crate) parent: Option<usize>,
    pub(crate) pos: Pos,
}

/// The setvars of one PD, in document order, with the set of their symbols (so that a repeated
/// symbol is found without comparing with every earlier one).
#[derive(Clone, Debug, Default)]
pub(crate) struct SetVars {
    list: Vec<RawSetVar>,
    symbols: HashSet<String>,
}

impl SetVars {
    /// Every setvar, in the order they were added.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, RawSetVar> {
        self.list.iter()
    }
}

impl<'a> IntoIterator for &'a SetVars {
    type Item = &'a RawSetVar;
    type IntoIter = std::slice::Iter<'a, RawSetVar>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Adds `setvar` unless its symbol is already set in this PD (error on `node`).
pub(crate) fn checked_add_setvar(
    file: &SdfFile<'_>,
    setvars: &mut SetVars,
    setvar: RawSetVar,
    node: Node<'_, '_>,
) -> SdfResult<()> {
    if !setvars.symbols.insert(setvar.symbol.clone()) {
        return Err(file.value_error(
            node,
            format_args!("setvar on symbol '{}' already exists", setvar.symbol),
        ));
    }
    setvars.list.push(setvar);
    Ok(())
}

/// A channel or IRQ id: at most [`PD_MAX_ID`] and not negative.
pub(crate) fn checked_channel_id(
    file: &SdfFile<'_>,
    node: Node<'_, '_>,
    value: SignedValue,
) -> SdfResult<u64> {
    if value > SignedValue::from(PD_MAX_ID) {
        return Err(file.value_error(node, format_args!("id must be < {}", PD_MAX_ID + 1)));
    }
    u64::try_from(value).map_err(|_| file.value_error(node, "id must be >= 0"))
}

/// Budget and period; the period defaults to the budget.
fn budget_period(file: &SdfFile<'_>, node: Node<'_, '_>) -> SdfResult<(u64, u64)> {
    let budget = file.opt_number(node, "budget")?.unwrap_or(BUDGET_DEFAULT);
    let period = file.opt_number(node, "period")?.unwrap_or(budget);
    if budget > period {
        return Err(file.value_error(
            node,
            format_args!("budget ({budget}) must be less than, or equal to, period ({period})"),
        ));
    }
    Ok((budget, period))
}

impl RawPd {
    pub(crate) fn from_xml(
        file: &SdfFile<'_>,
        node: Node<'_, '_>,
        depth: usize,
        domains: &Domains,
    ) -> SdfResult<Self> {
        let is_child = depth > 0;
        let mut allowed = vec![
            "name",
            "priority",
            "budget",
            "period",
            "passive",
            "stack_size",
            "smc",
            "cpu",
            "domain",
            "fpu",
        ];
        if is_child {
            allowed.extend(["id", "setvar_id"]);
        }
        file.check_attributes(node, &allowed)?;

        let name = file.required(node, "name")?.to_string();
        let child_id = if is_child {
            Some(file.required_number(node, "id")?)
        } else {
            None
        };

        let (budget, period) = budget_period(file, node)?;
        let passive = file.opt_bool(node, "passive", false)?;
        let stack_size = file
            .opt_number(node, "stack_size")?
            .unwrap_or(PD_DEFAULT_STACK_SIZE);
        let smc = file.opt_bool(node, "smc", false)?;
        if smc && !ARM_SMC {
            return Err(file.value_error(
                node,
                "Using SMC support without ARM SMC forwarding support enabled in the kernel for this platform",
            ));
        }
        let cpu = file.opt_number(node, "cpu")?.unwrap_or(0);
        if cpu >= NUM_CORES {
            return Err(file.value_error(
                node,
                format_args!("cpu core must be less than {NUM_CORES}, got {cpu}"),
            ));
        }
        if domains.has_domains() {
            let domain = file.required(node, "domain")?;
            if !domains.contains(domain) {
                return Err(file.value_error(
                    node,
                    format_args!("domain '{domain}' not declared in <domains>:"),
                ));
            }
        } else if let Some(domain) = node.attribute("domain") {
            return Err(file.value_error(
                node,
                format_args!(
                    "Specifying a domain '{domain}' without declaring a domain schedule is not allowed:"
                ),
            ));
        }
        if !(PD_MIN_STACK_SIZE..=PD_MAX_STACK_SIZE).contains(&stack_size) {
            return Err(file.value_error(
                node,
                format_args!(
                    "stack size must be between {PD_MIN_STACK_SIZE:#x} bytes and {PD_MAX_STACK_SIZE:#x} bytes"
                ),
            ));
        }
        if !stack_size.is_multiple_of(SMALL_PAGE) {
            return Err(file.value_error(
                node,
                format_args!(
                    "stack size must be aligned to the smallest page size, {SMALL_PAGE} bytes"
                ),
            ));
        }
        let priority = file.opt_number(node, "priority")?.unwrap_or(0);
        let Some(priority) = u8::try_from(priority)
            .ok()
            .filter(|priority| u64::from(*priority) <= PD_MAX_PRIORITY)
        else {
            return Err(file.value_error(
                node,
                format_args!("priority must be between 0 and {PD_MAX_PRIORITY}"),
            ));
        };
        let fpu = file.opt_bool(node, "fpu", true)?;

        let mut pd = RawPd {
            name,
            child_id,
            priority,
            budget,
            period,
            passive,
            stack_size,
            fpu,
            program_image: PathBuf::new(),
            program_image_for_symbols: None,
            maps: Vec::new(),
            irqs: Vec::new(),
            setvars: SetVars::default(),
            cap_maps: Vec::new(),
            cspace_pos: None,
            virtual_machine: None,
            children: Vec::new(),
            parent: None,
            pos: file.pos(node),
        };
        let mut program_image = None;

        for child in elements(node) {
            match child.tag_name().name() {
                "program_image" => {
                    file.check_attributes(child, &["path", "path_for_symbols"])?;
                    if program_image.is_some() {
                        return Err(
                            file.value_error(node, "program_image must only be specified once")
                        );
                    }
                    program_image = Some(PathBuf::from(file.required(child, "path")?));
                    pd.program_image_for_symbols =
                        child.attribute("path_for_symbols").map(PathBuf::from);
                }
                "map" => {
                    let map_max_vaddr = platform::pd_map_max_vaddr(stack_size);
                    let map = RawMap::from_xml(file, child, true, map_max_vaddr)?;
                    let symbols = [
                        (map.setvar_vaddr.clone(), SetVarKind::Vaddr),
                        (map.setvar_size.clone(), SetVarKind::Size),
                        (
                            map.setvar_prefill_size.clone(),
                            SetVarKind::PrefillSize { mr: map.mr.clone() },
                        ),
                    ];
                    for (symbol, kind) in symbols {
                        if let Some(symbol) = symbol {
                            checked_add_setvar(
                                file,
                                &mut pd.setvars,
                                RawSetVar { symbol, kind },
                                child,
                            )?;
                        }
                    }
                    pd.maps.push(map);
                }
                "irq" => pd.parse_irq(file, child)?,
                "ioport" => {
                    return Err(file.value_error(node, "I/O Ports are only available on x86"));
                }
                "setvar" => {
                    file.check_attributes(child, &["symbol", "region_paddr"])?;
                    let symbol = file.required(child, "symbol")?.to_string();
                    let region = file.required(child, "region_paddr")?.to_string();
                    let kind = SetVarKind::Paddr {
                        region,
                        pos: file.pos(child),
                    };
                    checked_add_setvar(file, &mut pd.setvars, RawSetVar { symbol, kind }, child)?;
                }
                "protection_domain" => {
                    if depth + 1 >= MAX_PD_NESTING {
                        // Not a Microkit message: Microkit recurses without a bound. So deep a
                        // nesting always exceeds the PD limit, so the file is invalid either way.
                        return Err(SdfError::new(
                            SdfErrorKind::Frameshift,
                            format!(
                                "Error: protection domains nested more than {MAX_PD_NESTING} deep: {}",
                                file.loc(file.pos(child))
                            ),
                        ));
                    }
                    let child_pd = RawPd::from_xml(file, child, depth + 1, domains)?;
                    if let (Some(symbol), Some(id)) =
                        (child.attribute("setvar_id"), child_pd.child_id)
                    {
                        let setvar = RawSetVar {
                            symbol: symbol.to_string(),
                            kind: SetVarKind::Id { id },
                        };
                        checked_add_setvar(file, &mut pd.setvars, setvar, child)?;
                    }
                    pd.children.push(child_pd);
                }
                "virtual_machine" => {
                    if !HYPERVISOR {
                        return Err(file.value_error(
                            node,
                            "seL4 has not been built as a hypervisor, virtual machines are disabled",
                        ));
                    }
                    if pd.virtual_machine.is_some() {
                        return Err(
                            file.value_error(node, "virtual_machine must only be specified once")
                        );
                    }
                    let (vm, vcpu_symbols) = RawVm::from_xml(file, child)?;
                    for (symbol, id) in vcpu_symbols {
                        let setvar = RawSetVar {
                            symbol,
                            kind: SetVarKind::Id { id },
                        };
                        checked_add_setvar(file, &mut pd.setvars, setvar, child)?;
                    }
                    pd.virtual_machine = Some(vm);
                }
                "cspace" => {
                    if pd.cspace_pos.is_some() {
                        return Err(file.value_error(node, "cspace must only be specified once"));
                    }
                    pd.cap_maps = cspace::from_xml(file, child)?;
                    pd.cspace_pos = Some(file.pos(child));
                }
                other => {
                    // Microkit words this one without its usual "Error: " prefix.
                    return Err(SdfError::microkit(format!(
                        "Invalid XML element '{other}': {}",
                        file.loc(file.pos(child))
                    )));
                }
            }
        }

        let Some(program_image) = program_image else {
            return Err(SdfError::microkit(format!(
                "Error: missing 'program_image' element on protection_domain: '{}'",
                pd.name
            )));
        };
        pd.program_image = program_image;
        Ok(pd)
    }

    /// An `<irq>` child. On AArch64 only the GIC form (`irq=`) exists; the x86 forms are refused
    /// with Microkit's own messages.
    fn parse_irq(&mut self, file: &SdfFile<'_>, child: Node<'_, '_>) -> SdfResult<()> {
        let id_text = file.required(child, "id")?;
        let id = checked_channel_id(file, child, file.signed_number(child, id_text)?)?;
        if let Some(symbol) = child.attribute("setvar_id") {
            let setvar = RawSetVar {
                symbol: symbol.to_string(),
                kind: SetVarKind::Id { id },
            };
            checked_add_setvar(file, &mut self.setvars, setvar, child)?;
        }
        if let Some(irq_text) = child.attribute("irq") {
            file.check_attributes(child, &["irq", "id", "setvar_id", "trigger"])?;
            let irq = file.number(child, irq_text)?;
            let trigger = match child.attribute("trigger") {
                None | Some("level") => IrqTrigger::Level,
                Some("edge") => IrqTrigger::Edge,
                Some(_) => {
                    return Err(file.value_error(child, "trigger must be either 'level' or 'edge'"))
                }
            };
            self.irqs.push(RawIrq {
                irq,
                id,
                trigger,
                pos: file.pos(child),
            });
            Ok(())
        } else if child.attribute("pin").is_some() {
            Err(file.value_error(child, "x86 I/O APIC IRQ isn't supported on ARM and RISC-V"))
        } else if child.attribute("pcidev").is_some() {
            Err(file.value_error(child, "x86 MSI IRQ isn't supported on ARM and RISC-V"))
        } else {
            file.required(child, "irq").map(drop)
        }
    }
}

impl RawVm {
    /// A `<virtual_machine>`, and the `setvar_id` symbols of its vCPUs (they belong to the
    /// parent PD's setvar list).
    fn from_xml(file: &SdfFile<'_>, node: Node<'_, '_>) -> SdfResult<(Self, Vec<(String, u64)>)> {
        // `protected` and `conversion` are the Frameshift extension (docs/SDF.md); the rest is
        // Microkit's AArch64 list.
        file.check_attributes(
            node,
            &[
                "name",
                "budget",
                "period",
                "priority",
                "protected",
                "conversion",
            ],
        )?;
        let name = file.required(node, "name")?.to_string();
        let (budget, period) = budget_period(file, node)?;
        let priority = match node.attribute("priority") {
            Some(text) => file.number_u8(node, text)?,
            None => 0,
        };
        if u64::from(priority) > PD_MAX_PRIORITY {
            return Err(file.value_error(
                node,
                format_args!("priority must be between 0 and {PD_MAX_PRIORITY}"),
            ));
        }
        let protected = file.opt_bool(node, "protected", false)?;
        let conversion = conversion(file, node, protected)?;

        let mut vcpus: Vec<RawVcpu> = Vec::new();
        let mut vcpu_symbols = Vec::new();
        let mut maps = Vec::new();
        for child in elements(node) {
            match child.tag_name().name() {
                "vcpu" => {
                    file.check_attributes(child, &["id", "setvar_id", "cpu"])?;
                    let id = file.required_number(child, "id")?;
                    if id > PD_MAX_ID {
                        return Err(
                            file.value_error(child, format_args!("id must be < {}", PD_MAX_ID + 1))
                        );
                    }
                    if vcpus.iter().any(|vcpu| vcpu.id == id) {
                        return Err(SdfError::microkit(format!(
                            "Error: duplicate vcpu id {id} in virtual machine '{name}' @ {}",
                            file.loc(file.pos(child))
                        )));
                    }
                    if let Some(cpu) = file.opt_number(child, "cpu")? {
                        if cpu >= NUM_CORES {
                            return Err(file.value_error(
                                child,
                                format_args!("cpu core must be less than {NUM_CORES}, got {cpu}"),
                            ));
                        }
                    }
                    if let Some(symbol) = child.attribute("setvar_id") {
                        vcpu_symbols.push((symbol.to_string(), id));
                    }
                    vcpus.push(RawVcpu {
                        id,
                        pos: file.pos(child),
                    });
                }
                "map" => {
                    // A VM has no program image, so no setvar attributes on its maps.
                    maps.push(RawMap::from_xml(
                        file,
                        child,
                        false,
                        platform::vm_map_max_vaddr(),
                    )?);
                }
                other => {
                    return Err(SdfError::microkit(format!(
                        "Error: invalid XML element '{other}': {}",
                        file.loc(file.pos(node))
                    )));
                }
            }
        }
        if vcpus.is_empty() {
            return Err(SdfError::microkit(format!(
                "Error: missing 'vcpu' element on virtual_machine: '{name}'"
            )));
        }
        let vm = RawVm {
            name,
            priority,
            budget,
            period,
            vcpus,
            maps,
            protected,
            conversion,
            pos: file.pos(node),
        };
        Ok((vm, vcpu_symbols))
    }
}

/// The Frameshift `conversion` attribute of a `<virtual_machine>`: `history` (the default) or
/// `split`, and only on a protected VM. An unprotected VM converts nothing, so even
/// `conversion="history"` on one is refused: the file would claim a mode that has no effect.
fn conversion(
    file: &SdfFile<'_>,
    node: Node<'_, '_>,
    protected: bool,
) -> SdfResult<Option<Conversion>> {
    let Some(text) = node.attribute("conversion") else {
        return Ok(protected.then_some(Conversion::History));
    };
    let refuse = |message| {
        Err(file
            .value_error(node, message)
            .with_kind(SdfErrorKind::Protected))
    };
    let mode = match text {
        "history" => Conversion::History,
        "split" => Conversion::Split,
        _ => return refuse("conversion must be 'history' or 'split'"),
    };
    if !protected {
        return refuse(
            "conversion is only valid on a protected virtual machine (protected=\"true\")",
        );
    }
    Ok(Some(mode))
}

/// Flattens the PD trees into one list, each parent directly followed by its subtree
/// ([A, B, D, C] for A with children B (child D) and C), checking child ids on the way.
pub(crate) fn flatten(file: &SdfFile<'_>, roots: Vec<RawPd>) -> SdfResult<Vec<RawPd>> {
    let mut all = Vec::new();
    for root in roots {
        push_tree(file, root, None, &mut all)?;
    }
    Ok(all)
}

fn push_tree(
    file: &SdfFile<'_>,
    mut pd: RawPd,
    parent: Option<usize>,
    all: &mut Vec<RawPd>,
) -> SdfResult<()> {
    let mut seen: HashSet<u64> = HashSet::with_capacity(pd.children.len());
    for child in &pd.children {
        let Some(id) = child.child_id else { continue };
        if !seen.insert(id) {
            return Err(SdfError::microkit(format!(
                "Error: duplicate id: {id} in protection domain: '{}' @ {}",
                pd.name,
                file.loc(child.pos)
            )));
        }
        if let Some(vm) = &pd.virtual_machine {
            if vm.vcpus.iter().any(|vcpu| vcpu.id == id) {
                return Err(SdfError::microkit(format!(
                    "Error: duplicate id: {id} clashes with virtual machine vcpu id in protection domain: '{}' @ {}",
                    pd.name,
                    file.loc(child.pos)
                )));
            }
        }
    }
    let children = std::mem::take(&mut pd.children);
    pd.parent = parent;
    let index = all.len();
    all.push(pd);
    for child in children {
        push_tree(file, child, Some(index), all)?;
    }
    Ok(())
}
