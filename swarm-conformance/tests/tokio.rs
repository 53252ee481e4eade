//! The conformance scenarios on swarm-tokio.
swarm_conformance::conformance_tests!(swarm_conformance::harness::TokioHarness);
