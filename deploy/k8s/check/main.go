// k8s-check validates Kubernetes manifests offline against the API's own Go
// types (k8s.io/api), so that a misspelled field, a wrong type or a bad
// quantity fails - no cluster and no network needed.
//
//	k8s-check FILE...
//
// Each YAML document is decoded strictly (sigs.k8s.io/yaml UnmarshalStrict:
// unknown fields, duplicate fields and wrong types are errors) into the type
// named by its apiVersion and kind; a kind this checker does not know is an
// error too. Then the deployment rules of deploy/README.md are checked:
// every container of a Deployment or StatefulSet has native gRPC liveness
// and readiness probes, resource requests and limits, and a non-root
// securityContext; each selector of a workload, Service or
// PodDisruptionBudget matches the labels of some pod template; every
// databuild service's terminationGracePeriodSeconds covers its
// shutdown_grace_ms from the ConfigMap's databuild.yaml. Prints one line per
// problem as FILE: KIND/NAME: problem and exits 1 if there is any.
//
//	k8s-check --print-config FILE...
//
// prints the databuild.yaml held by the ConfigMaps in the files.
package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// object is one decoded document.
type object struct {
	file string
	kind string
	name string
	obj  any
}

func (o object) where() string { return fmt.Sprintf("%s: %s/%s", o.file, o.kind, o.name) }

// newTyped returns an empty object of the API type for apiVersion + kind.
func newTyped(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Secret":
		return &corev1.Secret{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1 PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, true
	case "v1 Namespace":
		return &corev1.Namespace{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	}
	return nil, false
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeFile splits a file into documents and decodes each one strictly.
func decodeFile(path string) ([]object, []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", path, err)}
	}
	var objs []object
	var errs []string
	for i, doc := range docSep.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			errs = append(errs, fmt.Sprintf("%s: document %d: %v", path, i+1, err))
			continue
		}
		typed, ok := newTyped(tm.APIVersion, tm.Kind)
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: document %d: unknown apiVersion/kind %q %q", path, i+1,
				tm.APIVersion, tm.Kind))
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), typed); err != nil {
			errs = append(errs, fmt.Sprintf("%s: document %d (%s): %v", path, i+1, tm.Kind, err))
			continue
		}
		meta := typed.(metav1.Object)
		if meta.GetName() == "" {
			errs = append(errs, fmt.Sprintf("%s: document %d (%s): metadata.name is missing", path, i+1, tm.Kind))
		}
		objs = append(objs, object{file: path, kind: tm.Kind, name: meta.GetName(), obj: typed})
	}
	return objs, errs
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// podTemplate of a workload, or nil.
func podTemplate(o object) (*corev1.PodTemplateSpec, *metav1.LabelSelector) {
	switch w := o.obj.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template, w.Spec.Selector
	case *appsv1.StatefulSet:
		return &w.Spec.Template, w.Spec.Selector
	}
	return nil, nil
}

func matches(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// graceMs reads <service>.shutdown_grace_ms from the ConfigMaps' databuild.yaml
// (default 5000, as in examples/databuild.yaml).
func graceMs(objs []object) map[string]int64 {
	out := map[string]int64{}
	for _, o := range objs {
		cm, ok := o.obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		text, ok := cm.Data["databuild.yaml"]
		if !ok {
			continue
		}
		var cfg map[string]map[string]any
		if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
			continue // the config loader's test reports it
		}
		for _, svc := range []string{"eventlog", "job", "graph", "query"} {
			out[svc] = 5000
			if v, ok := cfg[svc]["shutdown_grace_ms"].(float64); ok {
				out[svc] = int64(v)
			}
		}
	}
	return out
}

func checkContainers(o object, tpl *corev1.PodTemplateSpec, grace map[string]int64) []string {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, o.where()+": "+fmt.Sprintf(f, a...)) }
	ps := tpl.Spec.SecurityContext
	podNonRoot := ps != nil && ps.RunAsNonRoot != nil && *ps.RunAsNonRoot
	for _, c := range tpl.Spec.Containers {
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() ||
			c.Resources.Limits.Memory().IsZero() {
			bad("container %s: resources need cpu and memory requests and a memory limit", c.Name)
		}
		sc := c.SecurityContext
		nonRoot := podNonRoot || (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
		if !nonRoot {
			bad("container %s: runAsNonRoot is not set", c.Name)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("container %s: allowPrivilegeEscalation must be false", c.Name)
		}
		if len(c.Args) == 0 {
			continue // not a databuild service (e.g. PostgreSQL): probes are its own business
		}
		svc := c.Args[0]
		for name, p := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe,
			"readinessProbe": c.ReadinessProbe} {
			if p == nil || p.GRPC == nil {
				bad("container %s: %s must be a native gRPC probe (grpc.health.v1)", c.Name, name)
			}
		}
		if g, ok := grace[svc]; ok {
			tgp := int64(30)
			if tpl.Spec.TerminationGracePeriodSeconds != nil {
				tgp = *tpl.Spec.TerminationGracePeriodSeconds
			}
			if tgp*1000 < g+2000 {
				bad("terminationGracePeriodSeconds %d does not cover %s.shutdown_grace_ms %d plus 2 s",
					tgp, svc, g)
			}
		}
	}
	return errs
}

func check(objs []object) []string {
	var errs []string
	var podLabels []map[string]string
	grace := graceMs(objs)
	for _, o := range objs {
		tpl, sel := podTemplate(o)
		if tpl == nil {
			continue
		}
		podLabels = append(podLabels, tpl.Labels)
		if sel == nil || !matches(sel.MatchLabels, tpl.Labels) {
			errs = append(errs, o.where()+": spec.selector.matchLabels does not match the pod template's labels")
		}
		errs = append(errs, checkContainers(o, tpl, grace)...)
	}
	anyPod := func(sel map[string]string) bool {
		for _, l := range podLabels {
			if matches(sel, l) {
				return true
			}
		}
		return false
	}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.Service:
			if !anyPod(v.Spec.Selector) {
				errs = append(errs, o.where()+": spec.selector matches no pod template")
			}
		case *policyv1.PodDisruptionBudget:
			if v.Spec.Selector == nil || !anyPod(v.Spec.Selector.MatchLabels) {
				errs = append(errs, o.where()+": spec.selector matches no pod template")
			}
		}
	}
	return errs
}

// printConfig writes the databuild.yaml of every ConfigMap in the files to
// stdout, so that a test can load it with the suite's own config loader.
func printConfig(files []string) {
	for _, f := range files {
		objs, errs := decodeFile(f)
		if len(errs) > 0 {
			fmt.Fprintln(os.Stderr, strings.Join(errs, "\n"))
			os.Exit(1)
		}
		for _, o := range objs {
			if cm, ok := o.obj.(*corev1.ConfigMap); ok {
				fmt.Print(cm.Data["databuild.yaml"])
			}
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: k8s-check FILE... | k8s-check --print-config FILE...")
		os.Exit(2)
	}
	if os.Args[1] == "--print-config" {
		printConfig(os.Args[2:])
		return
	}
	var objs []object
	var errs []string
	for _, f := range os.Args[1:] {
		o, e := decodeFile(f)
		objs = append(objs, o...)
		errs = append(errs, e...)
	}
	errs = append(errs, check(objs)...)
	sort.Strings(errs)
	for _, e := range errs {
		fmt.Println(e)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
	}
	fmt.Fprintf(os.Stderr, "k8s-check: %d objects %v, %d problems\n", len(objs), kinds, len(errs))
	if len(errs) > 0 {
		os.Exit(1)
	}
}
