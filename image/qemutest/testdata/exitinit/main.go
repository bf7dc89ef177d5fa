// exitinit is an init that says so and exits at once: the kernel then
// panics ("Attempted to kill init"), as it would with a broken snoded.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("snodebox-test: init exits")
	os.Exit(1)
}
