package config

import (
	"regexp"
	"slices"
	"strings"
)

// unknownVariables reports every RELAY_ variable in env that the relay does not read, with the
// closest name it does read: a typo such as RELAY_WORKER would otherwise leave the default in
// force without a word. Two kinds are not the relay's and are let be: RELAY_TEST_*, which the
// project's test tooling reads, and the variables Kubernetes writes into every pod for a
// Service named "relay" (RELAY_SERVICE_HOST, RELAY_PORT_8080_TCP, ...).
func unknownVariables(env []string) []*Error {
	known := make([]string, 0, len(fields()))
	for _, f := range fields() {
		known = append(known, f.name)
	}
	var out []*Error
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "RELAY_") || slices.Contains(known, name) || notOurs(name) {
			continue
		}
		if near := closest(name, known); near != "" {
			out = append(out, errorf(name, "unknown variable; did you mean %s? (outbox-relay help lists every variable)", near))
		} else {
			out = append(out, errorf(name, "unknown variable (outbox-relay help lists every variable)"))
		}
	}
	slices.SortFunc(out, func(a, b *Error) int { return strings.Compare(a.Var, b.Var) })
	return out
}

// kubernetesServiceLink matches the variables Kubernetes sets for a Service named "relay"
// when the pod's enableServiceLinks is on (the default).
var kubernetesServiceLink = regexp.MustCompile(`^RELAY_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$`)

func notOurs(name string) bool {
	return strings.HasPrefix(name, "RELAY_TEST_") || kubernetesServiceLink.MatchString(name)
}

// closest answers the known name nearest to name: within a few edits, or one that holds what
// follows RELAY_ in name (RELAY_TOKEN for RELAY_API_TOKEN); "" when none is near.
func closest(name string, known []string) string {
	best, bestDist := "", 4
	stem := strings.TrimPrefix(name, "RELAY_")
	for _, k := range known {
		d := editDistance(name, k)
		if len(stem) >= 4 && d > 1 && strings.Contains(k, "_"+stem) {
			d = min(d, 3)
		}
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes: the names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
