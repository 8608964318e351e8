package charttest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const (
	chartDir   = "../outbox-relay"
	wrapperDir = "../testdata/sidecar-app"
	namespace  = "shop"
)

// typed maps the apiVersion and kind of every manifest the chart may render to the type it
// must decode into. A kind missing here fails the test, so a new template gets checked too.
var typed = map[string]func() any{
	"apps/v1/Deployment":                 func() any { return new(appsv1.Deployment) },
	"v1/Service":                         func() any { return new(corev1.Service) },
	"v1/ConfigMap":                       func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                          func() any { return new(corev1.Secret) },
	"v1/ServiceAccount":                  func() any { return new(corev1.ServiceAccount) },
	"v1/Pod":                             func() any { return new(corev1.Pod) },
	"batch/v1/Job":                       func() any { return new(batchv1.Job) },
	"policy/v1/PodDisruptionBudget":      func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return new(networkingv1.NetworkPolicy) },
	// prometheus-operator kinds: no Go types here, checked field by field.
	"monitoring.coreos.com/v1/ServiceMonitor": nil,
	"monitoring.coreos.com/v1/PrometheusRule": nil,
	"monitoring.coreos.com/v1/PodMonitor":     nil,
}

// manifest is one document of helm template's output.
type manifest struct {
	Source string // the template it came from, from helm's "# Source:" comment
	Kind   string
	Name   string
	Object any // a pointer to the typed object, or *unstructured.Unstructured
}

// release is everything one helm template run rendered.
type release []manifest

// kinds counts the manifests by kind.
func (r release) kinds() map[string]int {
	m := make(map[string]int)
	for _, x := range r {
		m[x.Kind]++
	}
	return m
}

// get returns the only manifest of that kind, as T.
func get[T any](t *testing.T, r release, kind string) T {
	t.Helper()
	var found []manifest
	for _, x := range r {
		if x.Kind == kind {
			found = append(found, x)
		}
	}
	require.Len(t, found, 1, "want exactly one %s, have %v", kind, r.kinds())
	obj, ok := found[0].Object.(T)
	require.True(t, ok, "%s decoded into %T", kind, found[0].Object)
	return obj
}

// helm returns the helm binary: $HELM, which make chart sets, else helm on PATH.
func helm(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h, err := exec.LookPath("helm")
	if err != nil {
		t.Fatal("no helm: run `make chart` at the repository root, or set HELM to a helm v3 binary")
	}
	return h
}

// template runs helm template and returns its output, or an error with helm's message.
func template(t *testing.T, chart string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm(t), append([]string{"template", "demo", chart, "--namespace", namespace}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helm template %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// render runs helm template, which must succeed, and decodes every manifest strictly.
func render(t *testing.T, chart string, args ...string) release {
	t.Helper()
	out, err := template(t, chart, args...)
	require.NoError(t, err)
	return decode(t, out)
}

// renderError runs helm template, which must fail, and returns helm's message.
func renderError(t *testing.T, chart string, args ...string) string {
	t.Helper()
	_, err := template(t, chart, args...)
	require.Error(t, err, "helm template %v succeeded", args)
	return err.Error()
}

var (
	docSeparator = regexp.MustCompile(`(?m)^---\s*$`)
	sourceLine   = regexp.MustCompile(`(?m)^# Source: (.+)$`)
)

// decode splits helm's multi-document output and decodes each document strictly: an unknown
// field, a duplicate key or a wrong type fails the test.
func decode(t *testing.T, out string) release {
	t.Helper()
	var r release
	for _, doc := range docSeparator.Split(out, -1) {
		if strings.TrimSpace(sourceLine.ReplaceAllString(doc, "")) == "" {
			continue
		}
		var source string
		if m := sourceLine.FindStringSubmatch(doc); m != nil {
			source = m[1]
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		require.NoError(t, yaml.Unmarshal([]byte(doc), &head), "%s", source)
		key := head.APIVersion + "/" + head.Kind
		newObj, known := typed[key]
		require.True(t, known, "%s renders %s, which the test does not know", source, key)
		var obj any
		if newObj != nil {
			obj = newObj()
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), obj), "%s: %s", source, key)
		} else {
			var m map[string]any
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &m), "%s: %s", source, key)
			obj = &unstructured.Unstructured{Object: m}
		}
		r = append(r, manifest{Source: source, Kind: head.Kind, Name: head.Metadata.Name, Object: obj})
	}
	return r
}

// wrapperChart copies the test application chart and, as its dependency, the outbox-relay chart
// into a temporary directory: what `helm dependency build` would do, without writing into the
// source tree.
func wrapperChart(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sidecar-app")
	copyDir(t, wrapperDir, dir, func(rel string) bool { return rel == "charts" || rel == "Chart.lock" })
	copyDir(t, chartDir, filepath.Join(dir, "charts", "outbox-relay"), func(string) bool { return false })
	return dir
}

func copyDir(t *testing.T, from, to string, skip func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	require.NoError(t, err)
}

// notes renders templates/NOTES.txt, which helm template leaves out: a copy of the chart gets
// a template that renders the notes into a YAML string.
func notes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "outbox-relay")
	copyDir(t, chartDir, dir, func(string) bool { return false })
	require.NoError(t, os.Rename(filepath.Join(dir, "templates", "NOTES.txt"), filepath.Join(dir, "notes.txt")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "templates", "notes-as-yaml.yaml"),
		[]byte(`notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}`+"\n"), 0o644))
	out, err := template(t, dir, append(args, "--show-only", "templates/notes-as-yaml.yaml")...)
	require.NoError(t, err)
	var doc struct {
		Notes string `json:"notes"`
	}
	require.NoError(t, yaml.UnmarshalStrict([]byte(sourceLine.ReplaceAllString(out, "")), &doc))
	require.NotEmpty(t, doc.Notes)
	return doc.Notes
}
