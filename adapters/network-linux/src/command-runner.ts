import { execFile } from 'node:child_process'
import type { AbortOptions } from '@vipsec/interface'

/** What a command printed and how it ended. */
export interface CommandResult {
  /** The exit status (0 for success). */
  exitCode: number
  /** What it printed on standard output. */
  stdout: string
  /** What it printed on standard error. */
  stderr: string
}

/**
 * Runs an external program (`ip`, `arping`) without a shell. Replace it in unit tests to check
 * the command lines without root.
 */
export interface CommandRunner {
  /**
   * Runs `file` with `args` and resolves with its exit status and output, whatever the status.
   * Rejects only when the program could not be started (for example `ENOENT`) or the signal
   * aborted it.
   *
   * @param file - the program, a path or a name looked up in `PATH`
   * @param args - its arguments
   * @param options - aborting kills the program
   */
  run(file: string, args: string[], options?: AbortOptions): Promise<CommandResult>
}

/** Runs commands with `node:child_process` `execFile`. */
export class ExecFileCommandRunner implements CommandRunner {
  /**
   * Runs `file` with `args`.
   *
   * @param file - the program
   * @param args - its arguments
   * @param options - aborting kills the program
   */
  run(file: string, args: string[], options?: AbortOptions): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      execFile(
        file,
        args,
        { encoding: 'utf8', signal: options?.signal, windowsHide: true },
        (err, stdout, stderr) => {
          if (err == null) return resolve({ exitCode: 0, stdout, stderr })
          const e = err as NodeJS.ErrnoException & { code?: unknown }
          // a number code is the exit status; a string code means it never ran or was killed
          if (typeof e.code === 'number') return resolve({ exitCode: e.code, stdout, stderr })
          reject(err)
        }
      )
    })
  }
}
