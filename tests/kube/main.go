// Command kube-test is the Kubernetes API server the kapistrano tests and the operator demo run
// against: a real kube-apiserver (k8s.io/kubernetes) with etcd embedded in the same process, plus a
// kstatus subcommand that gives Flux's verdict on a live object.
//
//	kube-test apiserver --data-dir DIR --etcd-port N --etcd-peer-port M -- <kube-apiserver flags>
//	kube-test kstatus < object.json
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube-test apiserver|kstatus ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "apiserver":
		os.Exit(runAPIServer(os.Args[2:]))
	case "kstatus":
		os.Exit(runKstatus(os.Stdin, os.Stdout))
	default:
		fmt.Fprintf(os.Stderr, "unknown subcommand %q\n", os.Args[1])
		os.Exit(2)
	}
}
