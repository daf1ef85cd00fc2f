//! Machine types as Vertex AI prices them: the vCPUs, memory and built-in
//! accelerators of each, read from the machine type's name by Compute
//! Engine's published shapes.

use serde::Serialize;

/// What one prediction node of a machine type holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MachineShape {
    /// The machine type (`n1-standard-8`).
    pub machine_type: String,
    /// Its family (`n1`), which picks the vCPU and memory prices.
    pub family: String,
    /// vCPUs per node.
    pub vcpus: u32,
    /// Memory per node, in GiB.
    pub memory_gib: f64,
    /// Accelerators that come with the machine type (`g2`, `a2`), as
    /// Vertex AI names them, and how many.
    pub accelerator: Option<(String, u32)>,
}

/// A machine type the plan cannot price: not a shape it knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "machine type {0} is not one the plan knows (n1, n2, e2 standard/highmem/highcpu, \
     g2-standard, a2-highgpu)"
)]
pub struct UnknownMachine(pub String);

impl MachineShape {
    /// The shape of `machine_type`.
    pub fn of(machine_type: &str) -> Result<MachineShape, UnknownMachine> {
        let unknown = || UnknownMachine(machine_type.to_owned());
        let mut parts = machine_type.splitn(3, '-');
        let (Some(family), Some(kind), Some(size)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(unknown());
        };
        let shape = |vcpus: u32, memory_gib: f64, accelerator: Option<(&str, u32)>| MachineShape {
            machine_type: machine_type.to_owned(),
            family: family.to_owned(),
            vcpus,
            memory_gib,
            accelerator: accelerator.map(|(name, count)| (name.to_owned(), count)),
        };
        if family == "a2" && kind == "highgpu" {
            // a2-highgpu-{1,2,4,8}g: 12 vCPUs and 85 GiB per A100 40 GB.
            let gpus: u32 = size
                .strip_suffix('g')
                .and_then(|n| n.parse().ok())
                .filter(|n| [1, 2, 4, 8].contains(n))
                .ok_or_else(unknown)?;
            return Ok(shape(
                12 * gpus,
                85.0 * f64::from(gpus),
                Some(("nvidia-tesla-a100", gpus)),
            ));
        }
        let vcpus: u32 = size.parse().map_err(|_| unknown())?;
        let per_vcpu = match (family, kind) {
            ("n1", "standard") => 3.75,
            ("n1", "highmem") => 6.5,
            ("n1", "highcpu") => 0.9,
            ("n2" | "e2", "standard") => 4.0,
            ("n2" | "e2", "highmem") => 8.0,
            ("n2" | "e2", "highcpu") => 1.0,
            ("g2", "standard") => 4.0,
            _ => return Err(unknown()),
        };
        let accelerator = match (family, vcpus) {
            ("g2", 4 | 8 | 12 | 16 | 32) => Some(("nvidia-l4", 1)),
            ("g2", 24) => Some(("nvidia-l4", 2)),
            ("g2", 48) => Some(("nvidia-l4", 4)),
            ("g2", 96) => Some(("nvidia-l4", 8)),
            ("g2", _) => return Err(unknown()),
            _ => None,
        };
        Ok(shape(vcpus, per_vcpu * f64::from(vcpus), accelerator))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_come_from_the_name() {
        let n1 = MachineShape::of("n1-standard-8").unwrap();
        assert_eq!(
            (n1.family.as_str(), n1.vcpus, n1.memory_gib),
            ("n1", 8, 30.0)
        );
        assert_eq!(n1.accelerator, None);
        let g2 = MachineShape::of("g2-standard-24").unwrap();
        assert_eq!((g2.vcpus, g2.memory_gib), (24, 96.0));
        assert_eq!(g2.accelerator, Some(("nvidia-l4".into(), 2)));
        let a2 = MachineShape::of("a2-highgpu-2g").unwrap();
        assert_eq!((a2.vcpus, a2.memory_gib), (24, 170.0));
        assert_eq!(a2.accelerator, Some(("nvidia-tesla-a100".into(), 2)));
        assert_eq!(MachineShape::of("e2-highcpu-16").unwrap().memory_gib, 16.0);
    }

    #[test]
    fn unknown_shapes_are_named() {
        for name in [
            "ct5lp-hightpu-4t",
            "n1-standard",
            "g2-standard-5",
            "a2-highgpu-3g",
        ] {
            let error = MachineShape::of(name).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
