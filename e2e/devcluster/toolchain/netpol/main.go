// Command netpol answers, for each connection it is given, whether a set of NetworkPolicies
// admits it, as cyclonus's policy engine (github.com/mattfenwick/cyclonus/pkg/matcher) reads
// them. A local control plane stores NetworkPolicies but enforces none (no CNI plugin runs), so
// the tests ask this evaluator of the API's semantics what a cluster that enforces them would do.
//
// Usage:
//
//	netpol < input.json
//
// The input is one JSON object:
//
//	{"policies": [NetworkPolicy, ...],
//	 "cases": [{"source":      {"namespace": "a", "namespaceLabels": {...}, "podLabels": {...}},
//	            "destination": {"namespace": "b", "namespaceLabels": {...}, "podLabels": {...}},
//	            "port": 8000, "portName": "http", "protocol": "TCP"}, ...]}
//
// A peer without a namespace is outside the cluster (an IP address, "ip"). Each policy must
// name its namespace: cyclonus would otherwise place it in "default", and a test would pass on a
// policy the cluster puts elsewhere. The output is one JSON line per case, in order:
// {"allowed": bool, "ingress": bool, "egress": bool}; exit status 2 on an unreadable input.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

type peer struct {
	Namespace       string            `json:"namespace"`
	NamespaceLabels map[string]string `json:"namespaceLabels"`
	PodLabels       map[string]string `json:"podLabels"`
	IP              string            `json:"ip"`
}

type connection struct {
	Source      peer   `json:"source"`
	Destination peer   `json:"destination"`
	Port        int    `json:"port"`
	PortName    string `json:"portName"`
	Protocol    string `json:"protocol"`
}

type input struct {
	Policies []*networkingv1.NetworkPolicy `json:"policies"`
	Cases    []connection                  `json:"cases"`
}

type verdict struct {
	Allowed bool `json:"allowed"`
	Ingress bool `json:"ingress"`
	Egress  bool `json:"egress"`
}

func trafficPeer(p peer) *matcher.TrafficPeer {
	if p.Namespace == "" {
		return &matcher.TrafficPeer{IP: p.IP}
	}
	nsLabels := map[string]string{"kubernetes.io/metadata.name": p.Namespace} // set by the apiserver on every namespace
	for k, v := range p.NamespaceLabels {
		nsLabels[k] = v
	}
	return &matcher.TrafficPeer{
		IP:       p.IP,
		Internal: &matcher.InternalPeer{Namespace: p.Namespace, NamespaceLabels: nsLabels, PodLabels: p.PodLabels},
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "netpol: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields() // a misspelt field would silently read as "no labels"
	var in input
	if err := dec.Decode(&in); err != nil {
		fail("reading the input: %v", err)
	}
	if len(in.Cases) == 0 {
		fail("no cases")
	}
	for i, np := range in.Policies {
		if np == nil || np.Namespace == "" {
			fail("policy %d names no namespace", i)
		}
	}
	policy := matcher.BuildNetworkPolicies(false, in.Policies)
	enc := json.NewEncoder(os.Stdout)
	for i, c := range in.Cases {
		if c.Port <= 0 && c.PortName == "" {
			fail("case %d names no port", i)
		}
		protocol := corev1.Protocol(c.Protocol)
		if protocol == "" {
			protocol = corev1.ProtocolTCP
		}
		result := policy.IsTrafficAllowed(&matcher.Traffic{
			Source:           trafficPeer(c.Source),
			Destination:      trafficPeer(c.Destination),
			ResolvedPort:     c.Port,
			ResolvedPortName: c.PortName,
			Protocol:         protocol,
		})
		_ = enc.Encode(verdict{
			Allowed: result.IsAllowed(),
			Ingress: result.Ingress.IsAllowed(),
			Egress:  result.Egress.IsAllowed(),
		})
	}
}
