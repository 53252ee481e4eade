//! The conformance scenarios on swarm-smol, driver and tasks on async-std's executor.
swarm_conformance::conformance_tests!(swarm_conformance::harness::AsyncStdHarness);
