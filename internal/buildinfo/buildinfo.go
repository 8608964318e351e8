// Package buildinfo says which build of outbox-relay is running: the module version, the
// commit it was built from, when, and with which Go. It reads what the Go toolchain records
// in every binary (runtime/debug.ReadBuildInfo), so `go build` and `go install ...@v1.2.3`
// binaries know their version without -ldflags; a release build may still stamp a version
// and a build time with the linker (-X main.version=..., -X main.buildTime=...), which then
// take precedence.
package buildinfo

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info describes one build.
type Info struct {
	// Version is the release ("v0.1.0"), a Go pseudo-version for a build from a commit
	// ("v0.0.0-20261203194002-a6781f3abcde+dirty"), or "dev" when nothing says.
	Version string
	// Revision is the VCS commit, "" when unknown; Modified says the tree had changes.
	Revision string
	Modified bool
	// CommitTime is the commit's time (RFC 3339) as the toolchain recorded it, "" when unknown.
	CommitTime string
	// BuildTime is when a release build stamped the binary (RFC 3339), "" when not stamped.
	BuildTime string
	// Go is the toolchain that built the binary; Platform is GOOS/GOARCH.
	Go, Platform string
}

// Read answers this binary's Info. stampedVersion and stampedTime are the values the
// linker set, if any ("" or "dev" when it set none).
func Read(stampedVersion, stampedTime string) Info {
	info := Info{Version: "dev", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, BuildTime: stampedTime}
	if bi, ok := debug.ReadBuildInfo(); ok {
		// "(devel)" is what a build without VCS information, or a test binary, records.
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.time":
				info.CommitTime = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if stampedVersion != "" && stampedVersion != "dev" {
		info.Version = stampedVersion
	}
	return info
}

// UserAgent is the User-Agent of the relay's webhook requests: outbox-relay/<version>.
func (i Info) UserAgent() string { return "outbox-relay/" + i.Version }

// Print writes the build's description for `outbox-relay version`, with the schema version
// this build migrates to and expects. The first line is "outbox-relay <version>", as it
// always was; the others are "name: value".
func (i Info) Print(w io.Writer, schema int) {
	fmt.Fprintf(w, "outbox-relay %s\n", i.Version)
	rev := orUnknown(i.Revision)
	if i.Modified {
		rev += " (modified)"
	}
	built := i.BuildTime
	if built == "" {
		built = "not stamped"
		if i.CommitTime != "" {
			built += "; commit time " + i.CommitTime
		}
	}
	rows := [][2]string{
		{"revision", rev},
		{"built", built},
		{"go", i.Go},
		{"platform", i.Platform},
		{"schema", fmt.Sprintf("%d (the database schema version this build migrates to and expects)", schema)},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-9s %s\n", r[0]+":", r[1])
	}
}

func orUnknown(s string) string {
	if strings.TrimSpace(s) == "" {
		return "unknown"
	}
	return s
}
