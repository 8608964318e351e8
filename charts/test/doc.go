// Package charttest renders the outbox-relay Helm chart with helm template and checks the
// result: every manifest decodes strictly into its Kubernetes type (an unknown or misspelt
// field fails), and what matters holds (probes on the named port ops, the restricted security
// context, secrets from secretKeyRefs, the checksum annotation, the sidecar in an application's
// Deployment, no workload in sidecar mode, clear errors for bad values).
//
// It is its own Go module, so the relay's module does not depend on the Kubernetes API types.
// The helm binary comes from $HELM (make chart builds it into bin/ and sets it), else from PATH.
package charttest
