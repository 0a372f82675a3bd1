#!/usr/bin/env node
/**
 * The `vipsec` command.
 *
 * @module
 */
import 'reflect-metadata'
import { main } from './main.js'

process.exitCode = await main(process.argv.slice(2))
