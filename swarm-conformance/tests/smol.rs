//! The conformance scenarios on swarm-smol, driven by smol's executor.
swarm_conformance::conformance_tests!(swarm_conformance::harness::SmolHarness);
