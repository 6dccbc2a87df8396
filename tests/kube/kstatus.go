package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// verdict is what Flux's health check (kstatus) says about one object.
type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// runKstatus reads one object as JSON (kubectl get -o json) and writes kstatus's verdict as JSON.
func runKstatus(in io.Reader, out io.Writer) int {
	data, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading the object:", err)
		return 2
	}
	// Unstructured's own decoding keeps whole numbers as int64, as kstatus expects of metadata.generation.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: decoding the object:", err)
		return 2
	}
	result, err := status.Compute(obj)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		return 1
	}
	if err := json.NewEncoder(out).Encode(verdict{Status: result.Status.String(), Message: result.Message}); err != nil {
		return 1
	}
	return 0
}
