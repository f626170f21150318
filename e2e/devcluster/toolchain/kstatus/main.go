// Command kstatus prints what sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the library
// behind Flux's health checks (and kpt's, and cli-utils' apply --wait), makes of each object.
//
// Usage:
//
//	kstatus < objects
//
// Objects come on stdin as a stream of YAML documents or JSON values. Each result is one JSON
// line {"status": "InProgress|Current|Failed|Terminating|NotFound|Unknown", "message": ...,
// "conditions": [...]}, or {"error": ...}; the exit status is 1 when any object failed.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type output struct {
	Status     string             `json:"status,omitempty"`
	Message    string             `json:"message,omitempty"`
	Conditions []status.Condition `json:"conditions,omitempty"`
	Error      string             `json:"error,omitempty"`
}

func main() {
	dec := utilyaml.NewYAMLOrJSONDecoder(os.Stdin, 4096)
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	count, ok := 0, true
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: reading objects: %v\n", err)
			os.Exit(2)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty YAML document
		}
		count++
		obj := &unstructured.Unstructured{}
		var res *status.Result
		err := obj.UnmarshalJSON(raw) // integers become int64, as in a client's cache
		if err == nil {
			res, err = status.Compute(obj)
		}
		if err != nil {
			ok = false
			_ = enc.Encode(output{Error: err.Error()})
			continue
		}
		_ = enc.Encode(output{Status: res.Status.String(), Message: res.Message, Conditions: res.Conditions})
	}
	if !ok || count == 0 {
		os.Exit(1)
	}
}
